#!/bin/sh
# Installs fsfreeze-agent into this guest, or into an image root with DESTDIR=/path/to/root.
#
#   packaging/install.sh [--prefix DIR] [--destdir DIR] [--binary FILE] [--channel serial|vsock]
#                        [--config FILE] [--delegate | --no-delegate] [--no-reload]
#
# Installs: the binary ($PREFIX/sbin/fsfreeze-agent; for the launcher form built by
# `deno task compile --launcher` also its payload, $PREFIX/lib/fsfreeze-agent), the agent's
# systemd units, its thaw watchdog's (service and socket, the socket enabled) and the delegate's
# ($PREFIX/lib/systemd/system), for the serial channel the udev rule that starts the agent when
# the port appears ($PREFIX/lib/udev/rules.d) or for vsock the multi-user.target.wants link,
# /etc/qemu/fsfreeze-hook (the dispatcher) with the samples as disabled
# /etc/qemu/fsfreeze-hook.d/*.sample, /etc/qemu/fsfreeze-agent.conf.example, and with --config
# the config as /etc/qemu/qemu-ga.conf. Then, on a running system, `systemctl daemon-reload`.
#
# --delegate (the default for a binary built with `deno task compile --delegate`) also hands every
# command the agent does not implement to the distribution's qemu-ga, run privately by
# fsfreeze-agent-delegate.service: a drop-in ($PREFIX/lib/systemd/system/<unit>.d/delegate.conf)
# makes the agent's units want that unit and pass --delegate-socket. It needs qemu-guest-agent
# installed. --no-delegate removes the drop-ins.
#
# Safe to run again: files are replaced atomically, an existing qemu-ga.conf or fsfreeze-hook
# that differs is kept once as *.before-fsfreeze-agent, enabled hook scripts are never touched.
#
# The binary carries the Deno permissions of the configuration it was built for (tools/compile.ts
# writes them to FILE.build.json), including its own installed path: this script refuses a
# prefix, channel or config that does not match that record.
set -eu
umask 022

PROGRAM=fsfreeze-agent
BUILT_FOR_PATH_IN_UNITS=/usr/local/sbin/fsfreeze-agent
PREFIX=/usr/local
DESTDIR=${DESTDIR:-}
BINARY=
CHANNEL=
CONFIG=
DELEGATE=
RELOAD=yes
SRC=$(cd "$(dirname "$0")/.." && pwd)
QEMU_ETC=/etc/qemu
# The socket of fsfreeze-agent-delegate.service (tools/compile.ts DELEGATE_SOCKET) and the program
# it runs.
DELEGATE_SOCKET=/run/fsfreeze-agent-delegate/qga.sock
QEMU_GA=/usr/sbin/qemu-ga

say() { printf '%s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
	printf 'install.sh: %s\n' "$*" >&2
	exit 1
}

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

while [ $# -gt 0 ]; do
	case $1 in
	--prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
	--prefix=*) PREFIX=${1#*=}; shift ;;
	--destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
	--destdir=*) DESTDIR=${1#*=}; shift ;;
	--binary) BINARY=${2:?--binary needs a file}; shift 2 ;;
	--binary=*) BINARY=${1#*=}; shift ;;
	--channel) CHANNEL=${2:?--channel needs serial or vsock}; shift 2 ;;
	--channel=*) CHANNEL=${1#*=}; shift ;;
	--config) CONFIG=${2:?--config needs a file}; shift 2 ;;
	--config=*) CONFIG=${1#*=}; shift ;;
	--delegate) DELEGATE=yes; shift ;;
	--no-delegate) DELEGATE=no; shift ;;
	--no-reload) RELOAD=no; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done

case $PREFIX in
/*) ;;
*) die "--prefix must be an absolute path, not '$PREFIX'" ;;
esac
PREFIX=${PREFIX%/}
SBINDIR=$PREFIX/sbin
UNITDIR=$PREFIX/lib/systemd/system
UDEVDIR=$PREFIX/lib/udev/rules.d
INSTALL_PATH=$SBINDIR/$PROGRAM
[ -n "$BINARY" ] || BINARY=$SRC/dist/$PROGRAM-$(uname -m)
RECORD=$BINARY.build.json

# --- What the binary was built for -------------------------------------------------------------

[ -f "$BINARY" ] || die "no binary at $BINARY: build it first with 'deno task compile' (README.md, 'Install in a guest image')"

# One top-level string field of the build record ("key": "value" on its own line).
record_field() {
	[ -f "$RECORD" ] || return 0
	sed -n "s/^  \"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$RECORD"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

BUILT_PATH=$(record_field installPath)
BUILT_FORM=$(record_field form)
BUILT_PAYLOAD=$(record_field payloadDir)
BUILT_CHANNEL=$(record_field channel)
BUILT_CONFIG_SHA=$(record_field configSha256)
BUILT_DELEGATE=$(record_field delegateSocket)

if [ ! -f "$RECORD" ]; then
	warn "no build record $RECORD: cannot check that the binary was built for $INSTALL_PATH"
elif [ "$BUILT_PATH" != "$INSTALL_PATH" ]; then
	die "$BINARY was built to run as $BUILT_PATH, not $INSTALL_PATH (it starts its watchdog from its own path):
  rebuild with 'deno task compile --install-path $INSTALL_PATH', or install with --prefix ${BUILT_PATH%/sbin/"$PROGRAM"}"
fi

# The launcher form (deno task compile --launcher) runs its payload from <prefix>/lib.
PAYLOAD_DIR=$PREFIX/lib/$PROGRAM
if [ "$BUILT_FORM" = launcher ]; then
	[ -d "$BINARY.payload" ] || die "$BINARY is a launcher, but its payload $BINARY.payload is missing"
	[ "$BUILT_PAYLOAD" = "$PAYLOAD_DIR" ] ||
		die "$BINARY runs its payload from $BUILT_PAYLOAD, not $PAYLOAD_DIR"
fi

if [ -z "$CHANNEL" ]; then
	case $BUILT_CHANNEL in
	vsock) CHANNEL=vsock ;;
	custom) die "$BINARY was built with custom agent arguments: say which unit it is for with --channel" ;;
	*) CHANNEL=serial ;;
	esac
fi
case $CHANNEL in
serial | vsock) ;;
*) die "--channel must be serial or vsock, not '$CHANNEL'" ;;
esac
if [ -n "$BUILT_CHANNEL" ] && [ "$BUILT_CHANNEL" != custom ] && [ "$BUILT_CHANNEL" != "$CHANNEL" ]; then
	die "$BINARY was built for the $BUILT_CHANNEL unit; its permissions do not cover the $CHANNEL one:
  rebuild with 'deno task compile --channel $CHANNEL'"
fi

if [ -n "$CONFIG" ]; then
	[ -f "$CONFIG" ] || die "no config file $CONFIG"
	if [ -f "$RECORD" ] && [ "$(sha256_of "$CONFIG")" != "$BUILT_CONFIG_SHA" ]; then
		die "$BINARY was not built for $CONFIG: rebuild with 'deno task compile --config $CONFIG'"
	fi
fi

# The delegate: as built, unless asked otherwise. A binary built without it lacks the permission
# to reach its socket (the agent would refuse to start), so asking for it then is refused here.
if [ -z "$DELEGATE" ]; then
	if [ "$BUILT_DELEGATE" = "$DELEGATE_SOCKET" ]; then DELEGATE=yes; else DELEGATE=no; fi
fi
if [ "$DELEGATE" = yes ]; then
	if [ ! -f "$RECORD" ]; then
		warn "no build record: cannot check that $BINARY may connect to the delegate's socket"
	elif [ "$BUILT_DELEGATE" != "$DELEGATE_SOCKET" ]; then
		die "$BINARY was built without the delegate: its permissions do not let it connect to $DELEGATE_SOCKET:
  rebuild with 'deno task compile --delegate'"
	fi
	[ -x "$DESTDIR$QEMU_GA" ] ||
		die "--delegate runs the distribution's qemu-ga, and there is no $DESTDIR$QEMU_GA: install qemu-guest-agent first (apt install qemu-guest-agent), or pass --no-delegate"
fi

[ -f "$SRC/hooks/fsfreeze-hook" ] || die "missing $SRC/hooks/fsfreeze-hook (the units run it with -F)"

# --- Installing ----------------------------------------------------------------------------------

# install_file MODE SOURCE TARGET: atomic replace (a running binary is not written in place).
install_file() {
	mkdir -p "$(dirname "$3")"
	install -m "$1" "$2" "$3.new.$$"
	mv -f "$3.new.$$" "$3"
	say "  $3"
}

# keep_original TARGET SOURCE: an existing TARGET that differs from SOURCE is saved once.
keep_original() {
	if [ -f "$1" ] && ! cmp -s "$1" "$2" && [ ! -e "$1.before-fsfreeze-agent" ]; then
		cp -p "$1" "$1.before-fsfreeze-agent"
		warn "kept the previous $1 as $1.before-fsfreeze-agent"
	fi
}

# install_unit NAME: the unit with ExecStart pointing at this prefix's binary.
install_unit() {
	tmp=$(mktemp)
	sed "s#$BUILT_FOR_PATH_IN_UNITS#$INSTALL_PATH#g" "$SRC/packaging/$1" >"$tmp"
	install_file 0644 "$tmp" "$DESTDIR$UNITDIR/$1"
	rm -f "$tmp"
}

# install_delegate_dropin UNIT: the unit's ExecStart with --delegate-socket, and the delegate wanted.
install_delegate_dropin() {
	tmp=$(mktemp)
	exec_start=$(sed -n "s#^ExecStart=$BUILT_FOR_PATH_IN_UNITS#$INSTALL_PATH#p" "$SRC/packaging/$1")
	cat >"$tmp" <<EOF
# Installed by packaging/install.sh --delegate: every command fsfreeze-agent does not implement goes
# to the private qemu-ga of fsfreeze-agent-delegate.service (README.md, "The delegate").
[Unit]
Wants=fsfreeze-agent-delegate.service

[Service]
ExecStart=
ExecStart=$exec_start --delegate-socket=$DELEGATE_SOCKET
EOF
	install_file 0644 "$tmp" "$DESTDIR$UNITDIR/$1.d/delegate.conf"
	rm -f "$tmp"
}

# remove_delegate_dropin UNIT: back to the unit as shipped (a drop-in directory left empty goes).
remove_delegate_dropin() {
	rm -f "$DESTDIR$UNITDIR/$1.d/delegate.conf"
	rmdir "$DESTDIR$UNITDIR/$1.d" 2>/dev/null || true
}

# install_tree SOURCE TARGET: a directory replaced whole (a running agent keeps its old files).
install_tree() {
	rm -rf "$2.new.$$"
	mkdir -p "$(dirname "$2")"
	cp -R "$1" "$2.new.$$"
	chmod -R u=rwX,go=rX "$2.new.$$"
	if [ -e "$2" ]; then mv "$2" "$2.old.$$"; fi
	mv "$2.new.$$" "$2"
	rm -rf "$2.old.$$"
	say "  $2/"
}

WITH_DELEGATE=
[ "$DELEGATE" = no ] || WITH_DELEGATE=", with the delegate"
say "installing $PROGRAM ($CHANNEL channel$WITH_DELEGATE) into ${DESTDIR:-/}:"
if [ "$BUILT_FORM" = launcher ]; then
	install_tree "$BINARY.payload" "$DESTDIR$PAYLOAD_DIR"
elif [ -d "$DESTDIR$PAYLOAD_DIR" ]; then
	rm -rf "$DESTDIR$PAYLOAD_DIR" # a launcher installed before this binary
fi
install_file 0755 "$BINARY" "$DESTDIR$INSTALL_PATH"
install_unit fsfreeze-agent.service
install_unit fsfreeze-agent-vsock.service
install_unit fsfreeze-agent-watchdog.service
install_unit fsfreeze-agent-watchdog.socket
install_unit fsfreeze-agent-delegate.service
for unit in fsfreeze-agent.service fsfreeze-agent-vsock.service; do
	if [ "$DELEGATE" = yes ]; then install_delegate_dropin "$unit"; else remove_delegate_dropin "$unit"; fi
done
# The thaw watchdog's socket is enabled for either channel: the agent's units want it anyway.
SOCKET_LINK=$DESTDIR/etc/systemd/system/sockets.target.wants/fsfreeze-agent-watchdog.socket
mkdir -p "$(dirname "$SOCKET_LINK")"
ln -sfn "$UNITDIR/fsfreeze-agent-watchdog.socket" "$SOCKET_LINK"
say "  $SOCKET_LINK"

WANTS_LINK=$DESTDIR/etc/systemd/system/multi-user.target.wants/fsfreeze-agent-vsock.service
UDEV_RULE=$DESTDIR$UDEVDIR/99-fsfreeze-agent.rules
if [ "$CHANNEL" = serial ]; then
	install_file 0644 "$SRC/packaging/99-fsfreeze-agent.rules" "$UDEV_RULE"
	rm -f "$WANTS_LINK"
else
	rm -f "$UDEV_RULE"
	mkdir -p "$(dirname "$WANTS_LINK")"
	ln -sfn "$UNITDIR/fsfreeze-agent-vsock.service" "$WANTS_LINK"
	say "  $WANTS_LINK"
fi

mkdir -p "$DESTDIR$QEMU_ETC/fsfreeze-hook.d"
chmod 0755 "$DESTDIR$QEMU_ETC" "$DESTDIR$QEMU_ETC/fsfreeze-hook.d"
keep_original "$DESTDIR$QEMU_ETC/fsfreeze-hook" "$SRC/hooks/fsfreeze-hook"
install_file 0755 "$SRC/hooks/fsfreeze-hook" "$DESTDIR$QEMU_ETC/fsfreeze-hook"
for sample in "$SRC"/hooks/fsfreeze-hook.d/*; do
	[ -f "$sample" ] || continue
	name=${sample##*/}
	case $name in
	*.sample) ;;
	*) name=$name.sample ;;
	esac
	# Not executable and *.sample: the dispatcher skips it until an admin enables a copy.
	install_file 0644 "$sample" "$DESTDIR$QEMU_ETC/fsfreeze-hook.d/$name"
done

install_file 0644 "$SRC/packaging/fsfreeze-agent.conf.example" \
	"$DESTDIR$QEMU_ETC/fsfreeze-agent.conf.example"
CONF_TARGET=$DESTDIR$QEMU_ETC/qemu-ga.conf
if [ -n "$CONFIG" ]; then
	keep_original "$CONF_TARGET" "$CONFIG"
	install_file 0644 "$CONFIG" "$CONF_TARGET"
elif [ -f "$CONF_TARGET" ]; then
	if [ -n "$BUILT_CONFIG_SHA" ] && [ "$(sha256_of "$CONF_TARGET")" != "$BUILT_CONFIG_SHA" ]; then
		warn "$CONF_TARGET is not the config $BINARY was built for"
	elif [ -z "$BUILT_CONFIG_SHA" ] && grep -Eq \
		'^[[:space:]]*(method|path|logfile|pidfile|daemon|statedir|fsfreeze-hook|fsfreeze-scope)[[:space:]]*=' \
		"$CONF_TARGET"; then
		warn "$CONF_TARGET sets keys that change the permissions the agent needs, and the binary was
  built for the defaults: rebuild with 'deno task compile --config $QEMU_ETC/qemu-ga.conf'"
	fi
elif [ -n "$BUILT_CONFIG_SHA" ]; then
	warn "$BINARY was built for a config file, but none is installed: pass --config"
fi

for unit in "$DESTDIR"/lib/systemd/system/qemu-guest-agent.service \
	"$DESTDIR"/usr/lib/systemd/system/qemu-guest-agent.service; do
	[ -f "$unit" ] || continue
	if [ "$DELEGATE" = yes ]; then
		warn "qemu-guest-agent is installed: its qemu-ga serves as the delegate, on a private socket.
  Only one agent can use the port: the udev rule above starts fsfreeze-agent there; also run
  'systemctl mask qemu-guest-agent.service' so nothing starts qemu-ga on the port by hand."
	else
		warn "qemu-guest-agent is installed too. Only one agent can use the port: the udev rule above
  starts fsfreeze-agent in its place; also run 'systemctl mask qemu-guest-agent.service' (or
  remove the package) so nothing starts it by hand. (With --delegate, its qemu-ga would serve
  the commands fsfreeze-agent does not implement.)"
	fi
	break
done

# --- Telling the running system ------------------------------------------------------------------

if [ -z "$DESTDIR" ] && [ "$RELOAD" = yes ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if command -v udevadm >/dev/null 2>&1; then udevadm control --reload; fi
	say "systemd reloaded."
fi
if [ "$CHANNEL" = serial ]; then
	say "The agent starts when the guest agent port appears (at boot, or now with"
	say "'systemctl start fsfreeze-agent.service' if the VM already has the port)."
else
	say "Start it now with 'systemctl start fsfreeze-agent-vsock.service' (enabled for boot)."
fi
if [ "$DELEGATE" = yes ]; then
	say "The delegate starts with the agent; restart a running agent to hand it its commands."
fi
say "Hooks: copy a sample in $QEMU_ETC/fsfreeze-hook.d/ without .sample and chmod 0755 to enable it."
