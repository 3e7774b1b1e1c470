export * from './route-table';
export * from './route-store';
export * from './routes-file';
export * from './task-table';
export * from './task-store';
export * from './expiry';
export * from './route-map';
export * from './shared-route-store';
