/**
 * A tiny checker for the QAPI types of the commands in src/commands/system/ (member names, types
 * and optionality as in qemu's qga/qapi-schema.json), and a JSON parser that keeps integer
 * literals as bigint so `int` and `number` can be told apart.
 *
 * @module
 */

/** A QAPI type: a builtin, an enum, a list or a struct. */
export type QapiType =
  | "str"
  | "int"
  | "uint64"
  | "number"
  | "bool"
  | { enum: readonly string[] }
  | { list: QapiType }
  | { struct: Readonly<Record<string, QapiMember>> };

/** A struct member: its type and whether it may be absent (`'*name'` in the schema). */
export interface QapiMember {
  type: QapiType;
  optional?: boolean;
}

const req = (type: QapiType): QapiMember => ({ type });
const opt = (type: QapiType): QapiMember => ({ type, optional: true });

/** `GuestPCIAddress`. */
export const GuestPCIAddress: QapiType = {
  struct: { domain: req("int"), bus: req("int"), slot: req("int"), function: req("int") },
};

/** `GuestCCWAddress`. */
export const GuestCCWAddress: QapiType = {
  struct: { cssid: req("int"), ssid: req("int"), subchno: req("int"), devno: req("int") },
};

/** `GuestDiskBusType`. */
export const GuestDiskBusType: QapiType = {
  enum: [
    "ide",
    "fdc",
    "scsi",
    "virtio",
    "xen",
    "usb",
    "uml",
    "sata",
    "sd",
    "unknown",
    "ieee1394",
    "ssa",
    "fibre",
    "raid",
    "iscsi",
    "sas",
    "mmc",
    "virtual",
    "file-backed-virtual",
    "nvme",
  ],
};

/** `GuestDiskAddress`. */
export const GuestDiskAddress: QapiType = {
  struct: {
    "pci-controller": req(GuestPCIAddress),
    "bus-type": req(GuestDiskBusType),
    bus: req("int"),
    target: req("int"),
    unit: req("int"),
    serial: opt("str"),
    dev: opt("str"),
    "ccw-address": opt(GuestCCWAddress),
  },
};

/** `guest-get-fsinfo` returns `['GuestFilesystemInfo']`. */
export const GuestFilesystemInfoList: QapiType = {
  list: {
    struct: {
      name: req("str"),
      mountpoint: req("str"),
      type: req("str"),
      "used-bytes": opt("uint64"),
      "total-bytes": opt("uint64"),
      "total-bytes-privileged": opt("uint64"),
      disk: req({ list: GuestDiskAddress }),
    },
  },
};

/** `guest-network-get-interfaces` returns `['GuestNetworkInterface']`. */
export const GuestNetworkInterfaceList: QapiType = {
  list: {
    struct: {
      name: req("str"),
      "hardware-address": opt("str"),
      "ip-addresses": opt({
        list: {
          struct: {
            "ip-address": req("str"),
            "ip-address-type": req({ enum: ["ipv4", "ipv6"] }),
            prefix: req("int"),
          },
        },
      }),
      statistics: opt({
        struct: Object.fromEntries(
          [
            "rx-bytes",
            "rx-packets",
            "rx-errs",
            "rx-dropped",
            "tx-bytes",
            "tx-packets",
            "tx-errs",
            "tx-dropped",
          ].map((name) => [name, req("uint64")]),
        ),
      }),
    },
  },
};

/** `GuestHostName`. */
export const GuestHostName: QapiType = { struct: { "host-name": req("str") } };

/** `guest-get-users` returns `['GuestUser']`. */
export const GuestUserList: QapiType = {
  list: { struct: { user: req("str"), "login-time": req("number"), domain: opt("str") } },
};

/** `GuestTimezone`. */
export const GuestTimezone: QapiType = { struct: { zone: opt("str"), offset: req("int") } };

/** `GuestOSInfo`: every member optional. */
export const GuestOSInfo: QapiType = {
  struct: Object.fromEntries(
    [
      "kernel-release",
      "kernel-version",
      "machine",
      "id",
      "name",
      "pretty-name",
      "version",
      "version-id",
      "variant",
      "variant-id",
    ].map((name) => [name, opt("str")]),
  ),
};

/** `GuestLoadAverage`. */
export const GuestLoadAverage: QapiType = {
  struct: { load1m: req("number"), load5m: req("number"), load15m: req("number") },
};

/** `GuestAgentInfo` (`guest-info`). */
export const GuestAgentInfo: QapiType = {
  struct: {
    version: req("str"),
    supported_commands: req({
      list: {
        struct: { name: req("str"), enabled: req("bool"), "success-response": req("bool") },
      },
    }),
  },
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Everything wrong with `value` as a `type`, as "path: problem" lines (empty when valid). */
export function schemaErrors(value: unknown, type: QapiType, path = "return"): string[] {
  if (typeof type === "string") return builtinErrors(value, type, path);
  if ("enum" in type) {
    return typeof value === "string" && type.enum.includes(value)
      ? []
      : [`${path}: ${JSON.stringify(String(value))} is not one of ${type.enum.join("|")}`];
  }
  if ("list" in type) {
    if (!Array.isArray(value)) return [`${path}: not a list`];
    return value.flatMap((item, i) => schemaErrors(item, type.list, `${path}[${i}]`));
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return [`${path}: not an object`];
  }
  const errors: string[] = [];
  const members = value as Record<string, unknown>;
  for (const [name, member] of Object.entries(type.struct)) {
    if (!(name in members)) {
      if (!member.optional) errors.push(`${path}.${name}: missing`);
    } else {
      errors.push(...schemaErrors(members[name], member.type, `${path}.${name}`));
    }
  }
  for (const name of Object.keys(members)) {
    if (!(name in type.struct)) errors.push(`${path}.${name}: not a member of the type`);
  }
  return errors;
}

function builtinErrors(value: unknown, type: string, path: string): string[] {
  const ok = (() => {
    switch (type) {
      case "str":
        return typeof value === "string";
      case "bool":
        return typeof value === "boolean";
      case "int":
        return typeof value === "bigint" && value >= INT64_MIN && value <= INT64_MAX;
      case "uint64":
        return typeof value === "bigint" && value >= 0n && value <= UINT64_MAX;
      case "number":
        return typeof value === "bigint" || (typeof value === "number" && Number.isFinite(value));
      default:
        return false;
    }
  })();
  return ok ? [] : [`${path}: ${typeof value} ${String(value)} is not ${type}`];
}

/** JSON.parse that turns integer literals into bigint (doubles stay numbers). */
export function parseJsonExact(text: string): unknown {
  return JSON.parse(
    text,
    (_key, value, context?: { source?: string }) =>
      typeof value === "number" && /^-?\d+$/.test(context?.source ?? "")
        ? BigInt(context!.source!)
        : value,
  );
}
