/**
 * Reading the config file for {@link parseConfig}: a missing file is `undefined` (qemu-ga ignores
 * a missing default file); any other failure throws.
 *
 * @module
 */

/** Reads a config file; `undefined` when it does not exist. */
export function readConfigFile(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}
