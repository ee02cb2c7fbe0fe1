/**
 * Loading a module on its first use. A literal `import("./x.ts")` defers only running x.ts: Deno
 * still reads and analyses x.ts and everything it imports before the program starts. A specifier
 * Deno cannot see (a value, not a literal) keeps them out of the start-up graph until they are
 * needed. `deno task compile` embeds every source module, so the binary has them too.
 *
 * @module
 */

/** Imports the module at `url` (`new URL("./x.ts", import.meta.url)`) when called. */
export function loadLater<Module>(url: URL): Promise<Module> {
  return import(url.href);
}
