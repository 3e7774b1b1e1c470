export * from './atomic-file';
export * from './state-file';
export * from './port';
export * from './cluster-port';
export * from './json-backend';
export * from './backend';
