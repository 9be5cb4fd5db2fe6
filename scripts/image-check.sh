#!/usr/bin/env bash
# The runtime image, checked without a container engine. Ends with
# "image-check: N passed, M failed".
#
# 1. Assembles the runtime stage's root filesystem the way distroless
#    cc-debian12 is made: the Debian 12 packages it holds (base-files, netbase,
#    tzdata, the CA bundle from ca-certificates, libc6, libssl3, libgcc-s1,
#    libgomp1, libstdc++6, gcc-12-base) unpacked with dpkg-deb, /etc/passwd and
#    /etc/group with root, nobody and nonroot (65532), /home/nonroot, /tmp;
#    then the binaries copied into /usr/local/bin as the Dockerfile's COPY does.
#    The package list, binaries, user and command are read from the Dockerfile.
#    The .debs are fetched once (apt-get download) into $ORDO_STATE_DIR/image/debs;
#    later runs need no network.
# 2. Checks the layout: no shell anywhere, every binary present and executable,
#    the program interpreter and every DT_NEEDED library found inside the
#    root filesystem (the image's own ld.so resolves the whole closure), the CA bundle.
# 3. Runs each binary's --version with `chroot --userspec=UID:GID`, then
#    scripts/smoke.sh, plaintext and (when PostgreSQL has ssl=on) TLS, with
#    every service started from the root filesystem (wrappers that exec
#    chroot), so a missing library, file or permission fails here.
# 4. When podman is installed: `podman import` of the root filesystem with the
#    Dockerfile's USER/CMD/ENTRYPOINT, the image's config inspected and its
#    files mounted; `podman run` is tried and reported as skipped when the
#    runtime cannot start containers (as in this sandbox).
#
# The binaries are the workspace's debug build ($CARGO_TARGET_DIR/debug):
# the same DT_NEEDED set and interpreter as the release build the Dockerfile
# copies (same target, same linker, no static CRT). ORDO_IMAGE_BIN_DIR picks
# another directory (e.g. $CARGO_TARGET_DIR/release). Needs root (chroot).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "image-check needs root (chroot, file ownership in the root filesystem)"
  exec sudo --preserve-env "$0" "$@"
fi
for tool in readelf dpkg-deb apt-get chroot; do
  command -v "$tool" >/dev/null || die "image-check needs $tool (scripts/tools.sh installs binutils)"
done

dockerfile="$ORDO_ROOT/Dockerfile"
bin_src="${ORDO_IMAGE_BIN_DIR:-$CARGO_TARGET_DIR/debug}"
work="$ORDO_STATE_DIR/image"
debs="$work/debs"
rootfs="$work/rootfs"
wrappers="$work/bin"

passed=0 failed=0
check() { # check NAME COMMAND...: runs COMMAND, counts and reports the outcome
  local name=$1; shift
  if output=$("$@" 2>&1); then
    passed=$((passed + 1)); echo "  ok    $name"
  else
    failed=$((failed + 1)); echo "  FAIL  $name"; sed 's/^/        /' <<<"$output"
  fi
}

# --- what the Dockerfile's runtime stage says -------------------------------
runtime_stage=$(awk '/^FROM /{stage=$0} stage ~ /^FROM gcr.io\/distroless\// {print}' "$dockerfile")
base=$(grep -m1 '^FROM gcr.io/distroless/' "$dockerfile" | awk '{print $2}')
[ -n "$base" ] || die "no distroless runtime stage in $dockerfile"
# The build stage copies target/release/<name> into /out/; the runtime stage copies /out/.
binaries=$(grep -o 'target/release/[A-Za-z0-9_-]*' "$dockerfile" | sed 's|target/release/||' | sort -u)
[ -n "$binaries" ] || die "no target/release/<binary> in $dockerfile"
copy_dest=$(grep -E '^COPY --from=build /out/ ' <<<"$runtime_stage" | awk '{print $4}')
user=$(grep -E '^USER ' <<<"$runtime_stage" | awk '{print $2}')
cmd_json=$(grep -E '^CMD ' <<<"$runtime_stage" | sed 's/^CMD //')
entrypoint_json=$(grep -E '^ENTRYPOINT ' <<<"$runtime_stage" | sed 's/^ENTRYPOINT //')
uid=${user%%:*} gid=${user##*:}

echo "image check of the Dockerfile's runtime stage ($base, user $user, binaries: $(tr '\n' ' ' <<<"$binaries"))"

# The package set of distroless cc-debian12 (GoogleContainerTools/distroless:
# static = base-files netbase tzdata + CA bundle; base adds libc6 libssl3;
# cc adds libgcc-s1 libgomp1 libstdc++6 gcc-12-base). Other bases are not modelled.
case "$base" in
  gcr.io/distroless/cc-debian12|gcr.io/distroless/cc-debian12:*) ;;
  *) die "the runtime base is $base; image-check models gcr.io/distroless/cc-debian12 only: update its package list" ;;
esac
packages=(base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 libgomp1 libstdc++6 gcc-12-base)

check "the runtime stage copies the build's /out/ into /usr/local/bin/" test "$copy_dest" = /usr/local/bin/
check "the runtime stage runs as a numeric non-root uid:gid ($user)" \
  bash -c '[[ $1 =~ ^[0-9]+:[0-9]+$ ]] && [ "${1%%:*}" != 0 ] && [ "${1##*:}" != 0 ]' _ "$user"
check "the base tag is :nonroot, matching USER 65532" bash -c '[[ $1 == *:nonroot ]] && [ "$2" = 65532:65532 ]' _ "$base" "$user"
check "CMD is one of the copied binaries ($cmd_json)" \
  bash -c 'c=$(sed -E "s/^\[\"([^\"]*)\".*/\1/" <<<"$1"); [ "${c%/*}" = /usr/local/bin ] && grep -qx "${c##*/}" <<<"$2"' _ "$cmd_json" "$binaries"
check "ENTRYPOINT is empty (the chart sets the command per Deployment)" test "$entrypoint_json" = "[]"
# The binaries the build stage copies are the ones its `cargo build -p …` builds.
built_by_stage() {
  cargo metadata --offline --no-deps --format-version 1 --manifest-path "$ORDO_ROOT/Cargo.toml" | python3 -c '
import json, re, sys
dockerfile = open(sys.argv[1]).read()
built = set(re.findall(r"(?:^|\s)-p\s+([A-Za-z0-9_-]+)", dockerfile))
bins = {t["name"]: p["name"] for p in json.load(sys.stdin)["packages"]
        for t in p["targets"] if "bin" in t["kind"]}
missing = [b for b in sys.argv[2:] if bins.get(b) not in built]
for b in missing:
    print(f"{b}: package {bins.get(b)} is not among the -p packages {sorted(built)}")
sys.exit(1 if missing else 0)' "$dockerfile" $binaries
}
check "every copied binary is built by the build stage's cargo build -p …" built_by_stage

# --- 1. assemble the root filesystem ---------------------------------------
started=$SECONDS
mkdir -p "$debs"
have_debs() { local p; for p in "${packages[@]}"; do compgen -G "$debs/${p}_*.deb" >/dev/null || return 1; done; }
if ! have_debs; then
  say "fetching ${packages[*]} (apt-get download, once) into $debs"
  chmod 755 "$debs"
  if ! (cd "$debs" && apt-get download -q "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed'); then
    as_root apt-get update -qq
    (cd "$debs" && apt-get download -q "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed')
  fi
  have_debs || die "could not download the base packages into $debs"
fi

rm -rf "$rootfs" "$wrappers"
mkdir -p "$rootfs" "$wrappers"
chmod 755 "$rootfs"
: >"$work/packages.txt"
for p in "${packages[@]}"; do
  deb=$(ls "$debs/${p}"_*.deb | sort -V | tail -1)
  basename "$deb" >>"$work/packages.txt"
  [ "$p" = ca-certificates ] && continue
  dpkg-deb -x "$deb" "$rootfs" || die "cannot unpack $deb"
done
# Of ca-certificates distroless keeps only the bundle its postinst would build
# (every Mozilla certificate in one file) and the copyright, not the
# update-ca-certificates script.
cacerts=$(mktemp -d)
dpkg-deb -x "$(ls "$debs"/ca-certificates_*.deb | sort -V | tail -1)" "$cacerts" || die "cannot unpack ca-certificates"
install -d -m 755 "$rootfs/etc/ssl/certs" "$rootfs/usr/share/doc/ca-certificates"
cat "$cacerts"/usr/share/ca-certificates/mozilla/*.crt >"$rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$cacerts/usr/share/doc/ca-certificates/copyright" "$rootfs/usr/share/doc/ca-certificates/"
rm -rf "$cacerts"
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
printf 'passwd:         files\ngroup:          files\nshadow:         files\nhosts:          files dns\nnetworks:       files\nprotocols:      files\nservices:       files\n' \
  >"$rootfs/etc/nsswitch.conf"
install -d -m 1777 "$rootfs/tmp"
install -d -m 700 "$rootfs/root"
install -d -m 755 "$rootfs/home"
install -d -m 700 -o 65532 -g 65532 "$rootfs/home/nonroot"
install -d -m 755 "$rootfs/usr/local/bin"
for name in $binaries; do
  [ -x "$bin_src/$name" ] || die "$bin_src/$name is missing: build first (cargo build --workspace --bins)"
  cp "$bin_src/$name" "$rootfs/usr/local/bin/$name"
  chmod 755 "$rootfs/usr/local/bin/$name"
done
echo "root filesystem assembled in $((SECONDS - started)) s: $rootfs ($(du -sh "$rootfs" | cut -f1); $(wc -l <"$work/packages.txt") packages)"

# --- 2. layout ---------------------------------------------------------------
# Resolves a path inside the root filesystem, following symlinks there (an
# absolute link target is relative to the root filesystem, not to this host).
in_rootfs() {
  local path=$1 hops target
  for hops in $(seq 1 20); do
    if [ -L "$rootfs$path" ]; then
      target=$(readlink "$rootfs$path")
      if [[ $target == /* ]]; then path=$target; else path="$(dirname "$path")/$target"; fi
    else
      [ -e "$rootfs$path" ] && { echo "$path"; return 0; }
      # a parent directory may be a link
      local dir=${path%/*} base=${path##*/}
      [ -n "$dir" ] && [ -L "$rootfs$dir" ] || return 1
      path="$(in_rootfs "$dir")/$base" || return 1
    fi
  done
  return 1
}
echo "layout"
shells() { find "$rootfs" \( -name sh -o -name bash -o -name dash -o -name ash -o -name zsh -o -name busybox -o -name ksh -o -name mksh \) -print; }
check "no shell in the image (sh, bash, dash, busybox, …)" test -z "$(shells)"
check "no program in /bin, /sbin, /usr/bin, /usr/sbin" bash -c \
  'found=$(find "$1/bin" "$1/sbin" "$1/usr/bin" "$1/usr/sbin" -type f 2>/dev/null); [ -z "$found" ] || { echo "$found"; exit 1; }' _ "$rootfs"
check "nonroot is uid 65532 with home /home/nonroot, owned by it" bash -c \
  'grep -qx "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" "$1/etc/passwd" && [ "$(stat -c %u:%g "$1/home/nonroot")" = 65532:65532 ]' _ "$rootfs"
check "the USER's uid and gid exist in /etc/passwd and /etc/group" bash -c \
  'cut -d: -f3 "$1/etc/passwd" | grep -qx "$2" && cut -d: -f3 "$1/etc/group" | grep -qx "$3"' _ "$rootfs" "$uid" "$gid"
check "the CA bundle is present (/etc/ssl/certs/ca-certificates.crt, > 100 certificates)" bash -c \
  '[ "$(grep -c "BEGIN CERTIFICATE" "$1/etc/ssl/certs/ca-certificates.crt")" -gt 100 ]' _ "$rootfs"
check "tzdata and netbase files are present" test -e "$rootfs/usr/share/zoneinfo/UTC" -a -e "$rootfs/etc/services"
check "/tmp is world-writable and sticky" test "$(stat -c %a "$rootfs/tmp")" = 1777
search_dirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /lib /usr/lib)
needed_found() { # every DT_NEEDED of $1 in the image's library directories
  local lib dir missing=0
  for lib in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    for dir in "${search_dirs[@]}"; do in_rootfs "$dir/$lib" >/dev/null && continue 2; done
    echo "not in the image: $lib"; missing=1
  done
  return $missing
}
closure_found() { # the image's own loader resolves the whole closure, inside the root filesystem
  local out
  out=$(chroot "$rootfs" "$interp" --list "/usr/local/bin/$1" 2>&1) || { echo "$out"; return 1; }
  ! grep -q 'not found' <<<"$out" || { echo "$out"; return 1; }
  echo "$out"
}
for name in $binaries; do
  file="$rootfs/usr/local/bin/$name"
  check "$name is present and executable" test -f "$file" -a -x "$file"
  interp=$(readelf -l "$file" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
  check "$name: its interpreter ${interp:-?} is in the image" in_rootfs "${interp:-/none}"
  check "$name: every DT_NEEDED library is in the image ($(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' '))" needed_found "$file"
  check "$name: the image's ld.so resolves its whole closure inside the image" closure_found "$name"
done

# --- 3. run from the root filesystem -----------------------------------------
echo "binaries started from the root filesystem as $user (chroot --userspec)"
for name in $binaries; do
  # A variable naming a file under the root filesystem (the smoke test's TLS
  # files, made under its /tmp) is rewritten to the path the binary sees.
  cat >"$wrappers/$name" <<EOF
#!/bin/sh
# $name from the image's root filesystem, as the image's user
for var in \$(env | sed -n 's|^\([A-Za-z_][A-Za-z0-9_]*\)=$rootfs/.*|\1|p'); do
  eval "export \$var=\"\\\${\$var#$rootfs}\""
done
exec chroot --userspec=$user $rootfs /usr/local/bin/$name "\$@"
EOF
  chmod 755 "$wrappers/$name"
  check "$name --version runs inside the image as $user" bash -c \
    'out=$("$1/$2" --version) && echo "$out" && grep -q "^$2 [0-9]" <<<"$out"' _ "$wrappers" "$name"
done
# payments-sim needs neither database nor broker: it stays up to be looked at.
check "a service started by a wrapper runs as $user with the image as its root" bash -c '
  GRPC_LISTEN_ADDR=127.0.0.1:0 METRICS_LISTEN_ADDR=off "$1/$2" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 1 50); do [ -e /proc/$pid/root ] && [ "$(readlink /proc/$pid/root)" = "$3" ] && break; sleep 0.1; done
  root=$(readlink /proc/$pid/root); ids=$(awk "/^Uid:/{print \$2}" /proc/$pid/status):$(awk "/^Gid:/{print \$2}" /proc/$pid/status)
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  echo "root=$root ids=$ids"; [ "$root" = "$3" ] && [ "$ids" = "$4" ]' _ "$wrappers" payments-sim "$rootfs" "$user"

echo "the smoke test against the image's binaries"
smoke() { # smoke NAME [VAR=VALUE...]: scripts/smoke.sh against the wrappers
  local name=$1; shift
  if env "$@" ORDO_SMOKE_BIN_DIR="$wrappers" "$ORDO_ROOT/scripts/smoke.sh" 2>&1 | sed 's/^/    /'; then
    passed=$((passed + 1)); echo "  ok    $name"
  else
    failed=$((failed + 1)); echo "  FAIL  $name"
  fi
}
smoke "scripts/smoke.sh with every service started from the image"
# TLS: the certificates are made under the image's /tmp, owned by its user,
# and read by the services inside the image.
if [ "$(psql "$PG_ADMIN_URL" -qtAc 'SHOW ssl' 2>/dev/null)" = on ]; then
  smoke "ORDO_SMOKE_TLS=1 scripts/smoke.sh with every service started from the image" \
    ORDO_SMOKE_TLS=1 TMPDIR="$rootfs/tmp" ORDO_SMOKE_FILES_OWNER="$user"
else
  echo "  skip  the TLS smoke test: PostgreSQL does not have ssl=on (scripts/postgres.sh sets it up)"
fi

# --- 4. podman import (optional) ---------------------------------------------
if command -v podman >/dev/null; then
  tag="localhost/ordo-image-check:$$"
  tar -C "$rootfs" -cf "$work/rootfs.tar" . || die "cannot tar $rootfs"
  import() {
    podman import --change "USER $user" --change "CMD $cmd_json" --change "ENTRYPOINT $entrypoint_json" \
      --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
      --change "WORKDIR /home/nonroot" "$work/rootfs.tar" "$tag"
  }
  check "podman import of the root filesystem with the Dockerfile's USER/CMD/ENTRYPOINT" import
  inspect() {
    local got
    got=$(podman image inspect --format '{{.Config.User}}|{{json .Config.Cmd}}|{{json .Config.Entrypoint}}|{{.Config.WorkingDir}}' "$tag") || return 1
    echo "image config: $got"
    python3 -c '
import json, sys
user, cmd, entrypoint, workdir = sys.argv[1].split("|")
ok = (user == sys.argv[2] and json.loads(cmd) == json.loads(sys.argv[3])
      and (json.loads(entrypoint) or []) == json.loads(sys.argv[4]) and workdir == "/home/nonroot")
sys.exit(0 if ok else 1)' "$got" "$user" "$cmd_json" "$entrypoint_json"
  }
  check "the image's config has the Dockerfile's user, command and entrypoint" inspect
  mounted() {
    local dir name
    dir=$(podman image mount "$tag") || return 1
    for name in $binaries; do [ -x "$dir/usr/local/bin/$name" ] || { echo "missing: $name"; podman image unmount "$tag" >/dev/null; return 1; }; done
    podman image unmount "$tag" >/dev/null
  }
  check "the imported image holds every binary (podman image mount)" mounted
  # podman run fails in this sandbox (crun cannot set RLIMIT_NOFILE); where it works it must run the binary.
  if out=$(timeout 60 podman run --rm --network none "$tag" /usr/local/bin/ordo --version 2>&1); then
    check "podman run of the image: ordo --version" grep -q '^ordo [0-9]' <<<"$out"
  else
    echo "  skip  podman run: the container runtime cannot start containers here: $(tail -1 <<<"$out")"
  fi
  podman rmi -f "$tag" >/dev/null 2>&1
  rm -f "$work/rootfs.tar"
else
  echo "  skip  podman import: podman is not installed (apt-get install podman to add this step; \`podman run\` does not work in this sandbox)"
fi

echo "image-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
