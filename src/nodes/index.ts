export * from './node';
export * from './selection';
export * from './registry';
export * from './health';
export * from './load-history';
