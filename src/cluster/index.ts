export * from './presence';
export * from './leader-lease';
export * from './staging-sweep';
