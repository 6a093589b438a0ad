// The OpenAI error shape, `{"error":{"message","type","param","code"}}`, for every answer of the
// gateway's OpenAI routes: clients (the `openai` package, LangChain, curl scripts) parse only this.
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string | null,
    message: string,
    readonly param: string | null = null,
    /** Extra response headers (x-should-retry, retry-after). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'GatewayError';
  }

  body(): string {
    return errorBody(this.message, this.type, this.param, this.code);
  }
}

export const errorBody = (message: string, type: string, param: string | null, code: string | null) =>
  JSON.stringify({ error: { message, type, param, code } });

export const invalid = (message: string, param: string | null = null) =>
  new GatewayError(400, 'invalid_request_error', 'invalid_value', message, param);
