/** A background loop or listener with an explicit lifecycle; shutdown stops them in reverse order. */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}
