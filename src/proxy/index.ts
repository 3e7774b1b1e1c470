export * from './respond';
export * from './forwarder';
export * from './local-tasks';
export * from './options-cache';
export * from './proxy-handler';
export * from './proxy-server';
export * from './small-body';
