/**
 * Secrets the autoscaler generates at run time (each machine's node token and webhook secret), masked in logs while
 * their machine exists. They are kept per machine and dropped with it, so the set holds the live machines' secrets
 * only (a flat set grew by two secrets per machine ever created, and was masked against every log line).
 */
export class RuntimeSecrets {
  private readonly byMachine = new Map<string, string[]>();

  add(machine: string, secret: string): void {
    const list = this.byMachine.get(machine);
    if (list) list.push(secret);
    else this.byMachine.set(machine, [secret]);
  }

  /** The machine is gone (destroyed, or its creation failed): its secrets are no longer needed. */
  drop(machine: string): void {
    this.byMachine.delete(machine);
  }

  values(): string[] {
    return [...this.byMachine.values()].flat();
  }
}
