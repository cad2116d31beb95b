// gRPC-Web to the origin that serves the console, the signed-in credential, and errors in words.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { DescService } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { t, type Key } from "./i18n";

const TOKEN_KEY = "kordon.token";
const MODE_KEY = "kordon.mode";

export type SignInMode = "token" | "dev" | "";

export const session = {
  get token(): string {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  },
  get mode(): SignInMode {
    return (sessionStorage.getItem(MODE_KEY) as SignInMode | null) ?? "";
  },
  signIn(mode: "token" | "dev", token = ""): void {
    sessionStorage.setItem(MODE_KEY, mode);
    if (mode === "token") sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  signOut(): void {
    sessionStorage.removeItem(MODE_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** Adds `authorization: Bearer` when signed in with a token (or when one is given). */
function auth(override?: () => string | undefined): Interceptor {
  return (next) => async (req) => {
    const token = override ? override() : session.token;
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  interceptors: [auth()],
});

const clients = new Map<DescService, Client<DescService>>();

/** A client of `service` on this origin, with the session's credential. */
export function client<T extends DescService>(service: T): Client<T> {
  let c = clients.get(service);
  if (!c) {
    c = createClient(service, transport);
    clients.set(service, c);
  }
  return c as Client<T>;
}

/** A client that sends exactly `token` (none when empty), for signing in. */
export function clientWithToken<T extends DescService>(service: T, token: string): Client<T> {
  return createClient(
    service,
    createGrpcWebTransport({ baseUrl: location.origin, interceptors: [auth(() => token)] }),
  );
}

const codeWords: Partial<Record<Code, Key>> = {
  [Code.Unauthenticated]: "err.unauthenticated",
  [Code.PermissionDenied]: "err.permission_denied",
  [Code.InvalidArgument]: "err.invalid_argument",
  [Code.NotFound]: "err.not_found",
  [Code.Unavailable]: "err.unavailable",
  [Code.Unimplemented]: "err.unimplemented",
  [Code.FailedPrecondition]: "err.failed_precondition",
  [Code.Aborted]: "err.aborted",
  [Code.OutOfRange]: "err.out_of_range",
  [Code.ResourceExhausted]: "err.resource_exhausted",
  [Code.AlreadyExists]: "err.already_exists",
  [Code.DeadlineExceeded]: "err.deadline_exceeded",
};

/** "permission denied: <the server's message>", as the CLI words it. */
export function errorText(e: unknown): string {
  if (e instanceof ConnectError) {
    const key = codeWords[e.code] ?? "err.failed";
    return e.rawMessage ? `${t(key)}: ${e.rawMessage}` : t(key);
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

export function isAbort(e: unknown): boolean {
  return (
    (e instanceof ConnectError && e.code === Code.Canceled) ||
    (e instanceof DOMException && e.name === "AbortError")
  );
}

export function codeOf(e: unknown): Code | undefined {
  return e instanceof ConnectError ? e.code : undefined;
}

export function ts(d: Date | number): Timestamp {
  return timestampFromDate(typeof d === "number" ? new Date(d) : d);
}

export function ms(t: Timestamp | undefined): number | undefined {
  return t ? timestampDate(t).getTime() : undefined;
}

export function dur(seconds: number) {
  return { seconds: BigInt(Math.round(seconds)), nanos: 0 };
}

/** Every page of a paged list (at most `maxPages`). */
export async function allPages<T>(
  fetch: (pageToken: string) => Promise<{ items: T[]; next: string }>,
  maxPages = 20,
): Promise<T[]> {
  const out: T[] = [];
  let token = "";
  for (let i = 0; i < maxPages; i++) {
    const r = await fetch(token);
    out.push(...r.items);
    if (!r.next) break;
    token = r.next;
  }
  return out;
}
