export * from './clock';
export * from './errors';
export * from './service';
export * from './logger';
export * from './concurrency';
export * from './listen';
export * from './node-flags';
export * from './is-record';
