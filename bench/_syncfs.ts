/**
 * The physical floor of a first freeze: syncfs(2) of every freshly written filesystem at once, on
 * threads of Deno's blocking pool, timed from the first call to the last return. A FIFREEZE has to
 * write out at least this much, so a first cycle cannot beat it.
 *
 * The bench's own measuring tool, not part of the agent: it opens libc itself (the agent's FFI
 * lives in src/linux/, which has no use for syncfs).
 *
 * @module
 */

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

const encoder = new TextEncoder();

/** Calls syncfs on every mount point at once; returns the milliseconds until all returned. */
export async function syncAllAtOnce(mountPoints: readonly string[]): Promise<number> {
  using libc = openLibc();
  const fds = mountPoints.map((path) => {
    const fd = libc.symbols.open(encoder.encode(`${path}\0`), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw new Error(`cannot open ${path}`);
    return fd;
  });
  try {
    const started = performance.now();
    const results = await Promise.all(fds.map((fd) => libc.symbols.syncfs(fd)));
    const elapsed = performance.now() - started;
    if (results.some((result) => result !== 0)) throw new Error("syncfs failed");
    return elapsed;
  } finally {
    for (const fd of fds) libc.symbols.close(fd);
  }
}

function openLibc() {
  const library = Deno.dlopen(
    "libc.so.6",
    {
      open: { parameters: ["buffer", "i32"], result: "i32" },
      close: { parameters: ["i32"], result: "i32" },
      syncfs: { parameters: ["i32"], result: "i32", nonblocking: true },
    } as const,
  );
  return Object.assign(library, { [Symbol.dispose]: () => library.close() });
}
