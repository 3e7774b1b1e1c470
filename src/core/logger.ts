import * as fs from 'node:fs';
import * as path from 'node:path';
import * as winston from 'winston';

export type LogLevel = 'error' | 'warn' | 'info' | 'verbose' | 'debug' | 'silly';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'verbose', 'debug', 'silly'];

/** The narrow logging surface the rest of the code depends on. */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  verbose(message: string): void;
  debug(message: string): void;
  silly(message: string): void;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Full path of the log file, or null for console only. */
  file: string | null;
  console?: boolean;
  maxFileSize?: number;
  maxFiles?: number;
}

/** Collapses a message onto one line so that each event is exactly one log line. */
function oneLine(message: unknown): string {
  return String(message).replace(/\r?\n/g, '\\n');
}

const lineFormat = winston.format.printf((info) => `${info.level}: ${oneLine(info.message)}`);
const fileFormat = winston.format.printf(
  (info) => `${String(info['timestamp'])} ${info.level}: ${oneLine(info.message)}`,
);

/**
 * Console plus a size-rotated file (100 MiB × 10, as the original). If the log file cannot be written,
 * a warning goes to the console and logging continues there (the original threw at startup).
 */
export function createLogger(opts: LoggerOptions): Logger & { close(): Promise<void> } {
  const transports: winston.transport[] = [];
  if (opts.console !== false) {
    transports.push(new winston.transports.Console({ format: lineFormat, stderrLevels: [] }));
  }
  let fileProblem: string | null = null;
  if (opts.file) {
    const dir = path.dirname(opts.file);
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.accessSync(dir, fs.constants.W_OK);
      transports.push(
        new winston.transports.File({
          filename: opts.file,
          maxsize: opts.maxFileSize ?? 100 * 1024 * 1024,
          maxFiles: opts.maxFiles ?? 10,
          tailable: true,
          format: winston.format.combine(winston.format.timestamp(), fileFormat),
        }),
      );
    } catch {
      fileProblem = `Log directory '${dir}' cannot be written to, logging to the console only`;
    }
  }
  const w = winston.createLogger({ level: opts.level, transports, exitOnError: false });
  if (transports.length === 0) w.silent = true;
  if (fileProblem) w.warn(fileProblem);
  return {
    error: (m) => w.error(m),
    warn: (m) => w.warn(m),
    info: (m) => w.info(m),
    verbose: (m) => w.verbose(m),
    debug: (m) => w.debug(m),
    silly: (m) => w.silly(m),
    close: () =>
      new Promise<void>((resolve) => {
        w.on('finish', () => resolve());
        w.end();
        setTimeout(resolve, 500).unref();
      }),
  };
}

/** A logger that remembers lines, for tests. */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  error(m: string): void {
    this.lines.push(`error: ${m}`);
  }
  warn(m: string): void {
    this.lines.push(`warn: ${m}`);
  }
  info(m: string): void {
    this.lines.push(`info: ${m}`);
  }
  verbose(m: string): void {
    this.lines.push(`verbose: ${m}`);
  }
  debug(m: string): void {
    this.lines.push(`debug: ${m}`);
  }
  silly(m: string): void {
    this.lines.push(`silly: ${m}`);
  }
}
