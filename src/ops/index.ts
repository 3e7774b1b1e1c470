export * from './node-ops';
export * from './task-ops';
