export { AdminCli, type AdminCliOptions, type AsrCli } from './admin-cli';
export { COMMANDS, helpText, parseLine, resolveCommand, type ParsedLine, type ResolvedCommand } from './commands';
export type { Access, CliDeps, CommandContext, CommandHandler, CommandSpec } from './context';
export { DEFAULT_MAX_LINE_BYTES, LineFramer, type FramedInput } from './line-framer';
export { CliSession, passwordMatches, type SessionOptions } from './session';
