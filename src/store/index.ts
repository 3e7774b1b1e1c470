export * from './atomic-file';
export * from './state-file';
