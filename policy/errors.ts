// Error classes named after the reference engine's exceptions: the class name
// is part of what tools print (`error_type`), so keep them stable.

/** A request is refused. `notify` says whether the user should be told. */
export class AccessDenied extends Error {
  readonly notify: boolean;
  constructor(message: string, notify = true) {
    // a refusal is an expected outcome, not a bug: skip the costly stack trace
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.notify = notify;
  }
  get errorType(): string {
    return 'AccessDenied';
  }
}

/** The policy cannot be loaded; the message starts with "file:line: ". */
export class PolicySyntaxError extends AccessDenied {
  readonly file: string | null;
  readonly line: number | null;
  readonly detail: string;
  constructor(file: string | null, line: number | null, detail: string) {
    super(`${file ?? '<unknown>'}:${line === null ? 'None' : line}: ${detail}`);
    this.file = file;
    this.line = line;
    this.detail = detail;
  }
  override get errorType(): string {
    return 'PolicySyntaxError';
  }
}

/** The request itself is invalid (e.g. a relay that is not the relay). */
export class RequestError extends AccessDenied {
  override get errorType(): string {
    return 'RequestError';
  }
}

/**
 * A situation in which the reference engine crashes (unknown source on `ask`,
 * a disposable template that does not exist, …). We refuse the request
 * instead, with the reason.
 */
export class EvaluationError extends AccessDenied {
  /** how the reference's crash reads (e.g. "KeyError: '@dispvm'"), for conformance output */
  readonly referenceText: string | null;
  constructor(message: string, referenceText: string | null = null) {
    super(message);
    this.referenceText = referenceText;
  }
  override get errorType(): string {
    return 'EvaluationError';
  }
}
