export * from './types';
export * from './client';
export * from './options';
export * from './limits';
