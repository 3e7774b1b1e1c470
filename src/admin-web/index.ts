export * from './admin-web';
export { parseBasicAuth, CredentialCheck, LoginThrottle } from './auth';
export { targetNode } from './node-routes';
export { hostNameOf, ANY_HOST } from './host-check';
export { selectPage, PageSelector, parsePageRequest, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT } from './paging';
export type { TaskRow } from './task-routes';
export type { Readiness } from './health';
