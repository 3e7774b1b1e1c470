/**
 * Machine prices for the admin page and maxHourlySpend: the ASR file's `prices` (AWS's only source; an override
 * elsewhere) and the cloud's size list, cached per size and region for an hour.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AsrConfig } from '../../src/autoscaler/asr-config';
import type { MachineApi } from '../../src/autoscaler/machine-api';
import { parsePrices, PRICE_CACHE_MS, PriceBook } from '../../src/autoscaler/providers/api/prices';
import { FakeClock } from '../../src/core';

function sizeListApi(prices: Record<string, number>): MachineApi & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    provider: 'fake',
    create: () => Promise.reject(new Error('unused')),
    get: async () => null,
    listByInstall: async () => [],
    destroy: async () => undefined,
    hourlyPrice: async (size: string, region: string) => {
      asked.push(`${size}@${region}`);
      const p = prices[size];
      return p === undefined ? null : { hourly: p, currency: 'EUR' };
    },
  };
}

test('prices: the file wins (per region before every region), then the size list, cached for an hour per size and region', async () => {
  const clock = new FakeClock();
  const api = sizeListApi({ cpx22: 0.0143, cpx42: 0.0571 });
  const configured = parsePrices(new AsrConfig({ prices: { 't2.micro': 0.0116, 'us-east-1': { 't2.micro': 0.0104 } }, priceCurrency: 'USD' }));
  const book = new PriceBook(api, configured, clock);
  assert.deepEqual(await book.price('t2.micro', 'us-west-2'), { hourly: 0.0116, currency: 'USD' });
  assert.deepEqual(await book.price('t2.micro', 'us-east-1'), { hourly: 0.0104, currency: 'USD' });
  assert.deepEqual(api.asked, [], 'a configured price asked the cloud');
  assert.deepEqual(await book.price('cpx22', 'fsn1'), { hourly: 0.0143, currency: 'EUR' });
  assert.deepEqual(await book.price('cpx22', 'fsn1'), { hourly: 0.0143, currency: 'EUR' });
  assert.equal(await book.price('cx99', 'fsn1'), null);
  assert.equal(await book.price('cx99', 'fsn1'), null);
  assert.deepEqual(api.asked, ['cpx22@fsn1', 'cx99@fsn1'], 'answers (also "no price") are cached');
  clock.advance(PRICE_CACHE_MS);
  await book.price('cpx22', 'fsn1');
  assert.deepEqual(api.asked, ['cpx22@fsn1', 'cx99@fsn1', 'cpx22@fsn1'], 'the cache expires after an hour');
});

test('prices: a bad `prices` stops the start with the key named; no `prices` is an empty table in USD', () => {
  assert.throws(() => parsePrices(new AsrConfig({ prices: { 't2.micro': '0.01' } })), /Invalid config key prices\.t2\.micro/);
  assert.throws(() => parsePrices(new AsrConfig({ prices: { 'us-east-1': { 't2.micro': -1 } } })), /Invalid config key prices\.us-east-1\.t2\.micro/);
  assert.throws(() => parsePrices(new AsrConfig({ prices: [1] })), /Invalid config key prices:/);
  const none = parsePrices(new AsrConfig({}));
  assert.equal(none.table.size, 0);
  assert.equal(none.currency, 'USD');
});
