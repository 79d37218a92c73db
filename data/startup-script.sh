#!/bin/bash
# spillway's startup script: it makes a fresh Spot VM run the user's backend.
#
# Every setting is an instance metadata attribute, read here from the metadata
# server; none is pasted into this text, so no value (a URL, a component name)
# can run as code. Commands the user configured (install, start) are run as the
# commands they are, never spliced into other text.
#
#   spillway-backend-git, spillway-backend-ref   where the backend comes from
#   spillway-backend-dir                          a pre-baked copy: fetch and install skipped
#   spillway-packages                             Debian packages the backend needs
#   spillway-install, spillway-start              commands, run in the backend's directory
#   spillway-prefetch                             a command run after the install (model weights)
#   spillway-install-hash                         what the install is made of (startup.h)
#   spillway-mode                                 "bake": install, say so, start nothing
#   spillway-port, spillway-health-path           where its health answers
#   spillway-components                           comma-separated, given to the backend
#   spillway-env                                  KEY=VALUE lines for the backend
#   spillway-cloudsql                             a Cloud SQL instance connection name, or ""
#   spillway-log-dir                              /var/log/spillway by default
#   spillway-agent                                the watchdog agent's program (Python)
#   spillway-agent-port, spillway-agent-secret,   what the agent reads itself
#   spillway-lease-seconds
#
# Without spillway-backend-git and spillway-backend-dir, the image is taken to
# run the backend itself: only its health is awaited.
#
# Each step logs with a timestamp to the log directory and to standard error
# (the serial console), and leaves a mark when done: a second run (a reboot)
# skips what is finished. SPILLWAY_ROOT and SPILLWAY_METADATA_URL exist for the
# tests, which run this in a temporary root against spillway's emulator.
set -euo pipefail

root=${SPILLWAY_ROOT:-}
md=${SPILLWAY_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}
state=$root/var/lib/spillway
backend=$root/opt/spillway/backend
etc=$root/etc/spillway

# An attribute's value, or the default ($2) when it is not set.
attr() {
	local v
	if v=$(curl -sf -H 'Metadata-Flavor: Google' "$md/instance/attributes/$1"); then
		printf '%s' "$v"
	else
		printf '%s' "${2:-}"
	fi
}

log_dir=$root$(attr spillway-log-dir /var/log/spillway)
mkdir -p "$state/done" "$log_dir" "$etc"
log_file=$log_dir/startup.log

# To standard error (the serial console), never standard output: a step may be writing a file there.
log() {
	printf '%s spillway-startup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "$log_file" >&2
}

# How far the boot is, for the agent to report ("STEP UNIX-TIME"): a long install that
# goes on writing is making progress, and its VM is not given up at the boot timeout.
progress() {
	printf '%s %s\n' "$1" "$(date +%s)" >"$state/progress.new" && mv "$state/progress.new" "$state/progress"
}

# step NAME COMMAND...: run once; its mark says it is done.
step() {
	local name=$1
	shift
	if [ -e "$state/done/$name" ]; then
		log "$name: done before, skipped"
		return 0
	fi
	log "$name: start"
	progress "$name"
	"$@"
	touch "$state/done/$name"
	log "$name: done"
}

# Run a command whose every line of output is progress, logged as it comes.
with_progress() {
	local name=$1 line
	shift
	"$@" 2>&1 | while IFS= read -r line; do
		printf '%s\n' "$line" | tee -a "$log_file" >&2
		progress "$name"
	done
	return "${PIPESTATUS[0]}"
}

# A value that ends up in a systemd environment file must be one line.
one_line() {
	case $2 in
	*$'\n'* | *$'\r'*)
		log "$1: a value with a line break is refused"
		exit 1
		;;
	esac
}

packages() {
	local missing=() wanted=() name
	for tool in git curl python3; do
		command -v "$tool" >/dev/null || missing+=("$tool")
	done
	read -r -a wanted <<<"$(attr spillway-packages)"
	for name in "${wanted[@]}"; do
		if ! [[ $name =~ ^[a-z0-9][a-z0-9+.-]+$ ]]; then
			log "packages: '$name' is not a Debian package name"
			exit 1
		fi
		dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$name")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		with_progress packages env DEBIAN_FRONTEND=noninteractive apt-get update -q
		with_progress packages env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
}

fetch() {
	local url ref
	url=$(attr spillway-backend-git)
	ref=$(attr spillway-backend-ref main)
	if [ -d "$backend/.git" ]; then
		git -C "$backend" fetch --depth 1 -- origin "$ref"
		git -C "$backend" checkout -q FETCH_HEAD
	else
		mkdir -p "$(dirname "$backend")"
		git clone -q --depth 1 --branch "$ref" -- "$url" "$backend"
	fi
}

prefetch() {
	local command
	command=$(attr spillway-prefetch)
	if [ -n "$command" ]; then
		(cd "$backend" && with_progress prefetch bash -c "$command")
	fi
}

dependencies() {
	local install
	install=$(attr spillway-install)
	if [ -n "$install" ]; then
		(cd "$backend" && with_progress dependencies bash -c "$install")
	fi
}

# unit NAME: install the unit text on standard input as NAME.service and start it.
unit() {
	mkdir -p "$root/etc/systemd/system"
	cat >"$root/etc/systemd/system/$1.service"
	systemctl daemon-reload
	systemctl enable --now "$1.service"
}

cloudsql() {
	local conn
	conn=$(attr spillway-cloudsql)
	[ -n "$conn" ] || return 0
	one_line spillway-cloudsql "$conn"
	printf 'SPILLWAY_CLOUDSQL=%s\n' "$conn" >"$etc/cloudsql.env"
	unit spillway-cloudsql <<'UNIT'
[Unit]
Description=Cloud SQL Auth Proxy for spillway's backend
After=network-online.target

[Service]
EnvironmentFile=/etc/spillway/cloudsql.env
ExecStart=/bin/sh -c 'exec cloud-sql-proxy "$SPILLWAY_CLOUDSQL"'
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
}

service() {
	local components start port
	components=$(attr spillway-components)
	start=$(attr spillway-start)
	port=$(attr spillway-port 8010)
	one_line spillway-components "$components"
	one_line spillway-port "$port"
	if [ -z "$start" ]; then
		log "no spillway-start: the backend cannot be started"
		exit 1
	fi
	# The command and the environment are files the unit reads: data, not unit text.
	printf '%s\n' "$start" >"$etc/start"
	{
		printf 'SPILLWAY_COMPONENTS=%s\n' "$components"
		printf 'PORT=%s\n' "$port"
		{
			attr spillway-env
			echo
		} | while IFS= read -r line; do
			case $line in
			[A-Za-z_]*=*) printf '%s\n' "$line" ;;
			'') ;;
			*) log "spillway-env: '$line' is not KEY=VALUE, left out" ;;
			esac
		done
	} >"$etc/backend.env"
	unit spillway-backend <<'UNIT'
[Unit]
Description=The backend spillway runs here
After=network-online.target

[Service]
WorkingDirectory=/opt/spillway/backend
EnvironmentFile=/etc/spillway/backend.env
ExecStart=/bin/bash /etc/spillway/start
Restart=on-failure
RestartSec=2
# A preemption leaves 30 s: the agent's stop must end well within them.
TimeoutStopSec=20

[Install]
WantedBy=multi-user.target
UNIT
}

# Not a step: a reboot waits for the backend again. 1 when it never answered.
healthy() {
	local port path url
	port=$(attr spillway-port 8010)
	path=$(attr spillway-health-path /health)
	url="http://127.0.0.1:$port$path"
	for _ in $(seq 1 "${SPILLWAY_HEALTH_TRIES:-300}"); do
		if curl -sf -o /dev/null -- "$url"; then
			log "the backend answers on $url"
			return 0
		fi
		sleep 1
	done
	log "the backend did not answer on $url"
	return 1
}

# The watchdog: a VM whose workstation is gone deletes itself (docs/startup.md).
agent() {
	mkdir -p "$(dirname "$backend")"
	attr spillway-agent >"$root/opt/spillway/agent.py"
	if [ ! -s "$root/opt/spillway/agent.py" ]; then
		log "no spillway-agent: this VM has no watchdog, only its maxRunDuration"
		return 0
	fi
	unit spillway-agent <<'UNIT'
[Unit]
Description=spillway's watchdog: lease, status, preemption
After=network-online.target

[Service]
ExecStart=/usr/bin/python3 /opt/spillway/agent.py
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
}

log "starting (components: $(attr spillway-components))"
mode=$(attr spillway-mode)
want=$(attr spillway-install-hash)
have=$(cat "$state/installed" 2>/dev/null || true)
# A baked image's marks skip what it holds; an image that holds another install is installed over.
if [ -n "$have" ] && [ "$have" != "$want" ]; then
	log "the image holds another install ($have, not ${want:-none}): installing over it"
	rm -f "$state/installed" "$state/done/packages" "$state/done/fetch" \
		"$state/done/dependencies" "$state/done/prefetch"
elif [ -n "$have" ]; then
	log "the image holds this install ($have): packages, fetch, install and prefetch are done"
fi
step packages packages
# The watchdog first: it reports the install's progress, and ends a VM whose workstation is gone.
step agent agent
baked=$(attr spillway-backend-dir)
own=true # the backend is ours to start, else the image runs it
if [ -n "$baked" ] && [ -d "$root$baked" ]; then
	mkdir -p "$(dirname "$backend")"
	[ "$root$baked" = "$backend" ] || ln -sfn "$root$baked" "$backend" # the unit runs there
	log "using the pre-baked backend in $baked: fetch and install skipped"
elif [ -n "$(attr spillway-backend-git)" ]; then
	step fetch fetch
	step dependencies dependencies
	step prefetch prefetch
	[ -z "$want" ] || printf '%s\n' "$want" >"$state/installed"
else
	log "no spillway-backend-git or spillway-backend-dir: the image runs the backend"
	own=false
fi
if [ "$mode" = bake ]; then
	# What is this VM's own stays out of the image: a VM made from it installs its own agent
	# (the one of its spillway), makes its own key, and starts its own units.
	systemctl disable spillway-agent.service || log "the agent's unit could not be disabled"
	rm -rf "$state/done/agent" "$state/done/cloudsql" "$state/done/service"
	progress baked
	log "baked: the install is done; spillway stops this VM and makes its disk an image"
	exit 0
fi
step cloudsql cloudsql
if $own; then step service service; fi
progress waiting
if healthy; then
	progress ready
	log "ready"
else
	false # the watchdog runs all the same: it ends an idle VM
fi
