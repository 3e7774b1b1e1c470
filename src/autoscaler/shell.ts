/**
 * POSIX shell quoting for the commands run on a new machine through `docker-machine ssh` (the remote shell parses
 * them). The original joined values with spaces, so a Host header or a config value could run commands on the VM
 * (SPEC §12 item 28). Every value goes through `quote`; only fixed words of ours are left bare.
 */
export function quote(value: string | number): string {
  const s = String(value);
  if (s !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A command line from its words, each quoted. */
export function command(words: ReadonlyArray<string | number>): string {
  return words.map(quote).join(' ');
}

/** Replaces every secret in `text` by asterisks (logs, ASR VIEWCMD). Longer secrets first, so none leaks a part. */
export function maskSecrets(text: string, secrets: Iterable<string>): string {
  let out = text;
  // A secret with a quote in it appears quoted in commands: mask that form too.
  const raw = [...secrets].filter((s) => s.length >= 3);
  const list = [...new Set(raw.flatMap((s) => [quote(s), s]))].sort((a, b) => b.length - a.length);
  for (const s of list) out = out.split(s).join('********');
  return out;
}
