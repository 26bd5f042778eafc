#!/usr/bin/env bash
# Builds the rvs Debian package: rvsd, rvsadm and rvs-decap in /usr/sbin, the systemd unit,
# /etc/rvs/rvsd.toml and /etc/default/rvsd (conffiles), man pages and bash completions made
# from the binaries' own --help (help2man), and the ipvsadm alternative (postinst/prerm).
# Plain dpkg-deb: no debhelper tree, no extra cargo tool.
#
#   scripts/build-deb.sh                     # cargo build --release, then target/debian/rvs_VERSION_ARCH.deb
#   scripts/build-deb.sh --profile debug     # from target/debug
#   scripts/build-deb.sh --bin-dir DIR       # prebuilt binaries, no cargo
#   scripts/build-deb.sh --out DIR           # where the .deb goes (default target/debian)
#
# Needs dpkg-deb, help2man and gzip (dpkg-shlibdeps, from dpkg-dev, for exact Depends).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PKG="$ROOT/packaging/deb"
profile=release bin_dir="" out="$ROOT/target/debian"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
for c in dpkg-deb help2man gzip; do
    command -v "$c" >/dev/null || { echo "build-deb.sh: $c not found (apt-get install ${c/dpkg-deb/dpkg})" >&2; exit 2; }
done

if [ -z "$bin_dir" ]; then
    flag=()
    [ "$profile" = release ] && flag=(--release) || flag=(--profile "$profile")
    (cd "$ROOT" && cargo build --locked "${flag[@]}" -p rvsd -p rvsadm -p rvs-decap)
    bin_dir="$ROOT/target/$profile"
fi
bin_dir="$(cd "$bin_dir" && pwd)"
BINS=(rvsd rvsadm rvs-decap)
for b in "${BINS[@]}"; do [ -x "$bin_dir/$b" ] || { echo "build-deb.sh: missing $bin_dir/$b" >&2; exit 2; }; done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d /tmp/rvs-deb.XXXXXX)"
trap 'rm -rf "$work"' EXIT
tree="$work/tree"
install -d "$tree/DEBIAN" "$tree/usr/sbin" "$tree/lib/systemd/system" "$tree/etc/rvs" "$tree/etc/default" \
    "$tree/usr/share/man/man8" "$tree/usr/share/bash-completion/completions" "$tree/usr/share/doc/rvs/examples"

# Binaries, without their debug info (the release profile keeps line tables for perf).
for b in "${BINS[@]}"; do
    install -m 0755 "$bin_dir/$b" "$tree/usr/sbin/$b"
    if command -v strip >/dev/null; then strip --strip-debug "$tree/usr/sbin/$b"; fi
done

install -m 0644 "$PKG/rvsd.service" "$tree/lib/systemd/system/rvsd.service"
install -m 0644 "$PKG/rvsd.toml" "$tree/etc/rvs/rvsd.toml"
install -m 0644 "$PKG/rvsd.default" "$tree/etc/default/rvsd"
install -m 0644 "$ROOT/README.md" "$tree/usr/share/doc/rvs/README.md"
install -m 0644 "$ROOT/crates/config/examples/rvs.toml" "$tree/usr/share/doc/rvs/examples/rvs.toml"
{
    echo "rvs: Linux Virtual Server in user space."
    echo "License: MIT OR Apache-2.0 (both texts follow)."
    echo
    cat "$ROOT/LICENSE-MIT"
    echo
    cat "$ROOT/LICENSE-APACHE"
} >"$tree/usr/share/doc/rvs/copyright"

# Man pages and completions from the installed binaries' --help: they cannot drift from it.
declare -A WHAT=(
    [rvsd]="rvs director daemon: Linux Virtual Server in user space"
    [rvsadm]="administer the rvs virtual server table (ipvsadm-compatible)"
    [rvs-decap]="decapsulate LVS TUN traffic on a real server without the ipip module"
)
mkdir -p "$work/bin"
for b in "${BINS[@]}"; do ln -s "$tree/usr/sbin/$b" "$work/bin/$b"; done
# rvsadm prints ipvsadm's help byte for byte: a version banner, then "Usage:" alone on its
# line and one indented line per form. help2man reads the forms as GNU's "Usage: X / or: Y".
rm "$work/bin/rvsadm"
cat >"$work/bin/rvsadm" <<EOF
#!/bin/bash
(exec -a rvsadm "$tree/usr/sbin/rvsadm" "\$@") | awk 'NR == 1 && /^ipvsadm v/ { next }
    /^Usage:\$/ { u = 1; next }
    u == 1 && /^  [^ ]/ { sub(/^ +/, ""); print "Usage: " \$0; u = 2; next }
    u == 2 && /^  [^ ]/ { sub(/^ +/, ""); print "   or: " \$0; next }
    { u = 0; print }'
EOF
chmod 755 "$work/bin/rvsadm"
for b in "${BINS[@]}"; do
    PATH="$work/bin:$PATH" help2man --no-info --section 8 --name "${WHAT[$b]}" \
        --version-string "$version" --include "$PKG/$b.h2m" --output "$work/$b.8" "$b"
    gzip -9n -c "$work/$b.8" >"$tree/usr/share/man/man8/$b.8.gz"
    "$PKG/completion.sh" "$b" "$tree/usr/sbin/$b" >"$tree/usr/share/bash-completion/completions/$b"
done

depends="libc6, libgcc-s1"
if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$work/shl/debian" && touch "$work/shl/debian/control"
    depends="$(cd "$work/shl" && dpkg-shlibdeps -O "${BINS[@]/#/$tree/usr/sbin/}" 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p')"
fi
size="$(du -sk --exclude=DEBIAN "$tree" | cut -f1)"
cat >"$tree/DEBIAN/control" <<EOF
Package: rvs
Version: $version
Architecture: $arch
Maintainer: rvs developers <rvs@localhost>
Installed-Size: $size
Depends: $depends
Recommends: bash-completion
Suggests: keepalived
Section: net
Priority: optional
Description: Linux Virtual Server (LVS/IPVS) in user space
 rvs is a layer-4 load balancer with the kernel IPVS schedulers, NAT, DR and
 TUN forwarding and the connection table, run in user space on AF_PACKET or
 AF_XDP. rvsd is the director daemon (a systemd service), rvsadm the
 ipvsadm-compatible command line (optionally the ipvsadm alternative), and
 rvs-decap decapsulates TUN traffic on real servers without the ipip module.
EOF
printf '/etc/rvs/rvsd.toml\n/etc/default/rvsd\n' >"$tree/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$PKG/$s" "$tree/DEBIAN/$s"; done
(cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$tree/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/rvs_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$tree" "$deb" >/dev/null
echo "$deb"
