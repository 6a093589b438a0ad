// The CLI talks to the API only. Where: FABRIK_URL (default http://127.0.0.1:8080). Who:
// FABRIK_TOKEN, else the operator token `fabrik up` left in its data folder on this host.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ErrorBody } from '../api/contract.js';

/** The API said no: its code, its sentence and the field to blame, for a person to read. */
export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiRequestError';
  }
}

/** Fabrik is not there: wrong URL, or `fabrik up` is not running. */
export class UnreachableError extends Error {
  constructor(url: string, cause: string) {
    super(`cannot reach Fabrik at ${url} (${cause}); start it with \`fabrik up\`, or set FABRIK_URL`);
    this.name = 'UnreachableError';
  }
}

export const DEFAULT_DATA_DIR = process.env.FABRIK_DATA ?? '.fabrik';

export class ApiClient {
  constructor(
    readonly url: string,
    private readonly token: string | null,
  ) {}

  static fromEnv(o: { url?: string; token?: string; dataDir?: string } = {}): ApiClient {
    const url = (o.url ?? process.env.FABRIK_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
    let token = o.token ?? process.env.FABRIK_TOKEN ?? null;
    const file = join(o.dataDir ?? DEFAULT_DATA_DIR, 'operator-token');
    if (!token && existsSync(file)) token = readFileSync(file, 'utf8').trim();
    return new ApiClient(url, token);
  }

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const res = await this.fetch(method, path, body, headers);
    const text = await res.text();
    if (!res.ok) throw errorOf(res.status, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** For streams (logs -f): the raw response, checked. */
  async stream(path: string): Promise<Response> {
    const res = await this.fetch('GET', path);
    if (!res.ok) throw errorOf(res.status, await res.text());
    return res;
  }

  private async fetch(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    const h: Record<string, string> = { ...headers };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    try {
      return await fetch(this.url + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw new UnreachableError(this.url, cause);
    }
  }
}

function errorOf(status: number, text: string): ApiRequestError {
  try {
    const { error } = JSON.parse(text) as ErrorBody;
    return new ApiRequestError(status, error.code, error.message, error.field);
  } catch {
    return new ApiRequestError(status, 'HTTP_' + status, text.slice(0, 200) || `HTTP ${status}`);
  }
}
