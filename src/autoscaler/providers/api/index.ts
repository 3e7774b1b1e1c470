export * from './aws';
export * from './config';
export * from './digitalocean';
export * from './hetzner';
export * from './http';
export * from './plan';
export * from './scaleway';
