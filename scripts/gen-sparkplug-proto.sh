#!/usr/bin/env bash
# Regenerates Sources/Sparkplug/Generated/sparkplug_b.pb.swift from Sources/Sparkplug/Proto/sparkplug_b.proto.
# Needs protoc (Debian: apt-get install -y protobuf-compiler) and protoc-gen-swift built from the same
# swift-protobuf version the package depends on (1.39.0), so generated code and runtime agree.
# Usage: scripts/gen-sparkplug-proto.sh [path/to/protoc-gen-swift]
# Without an argument, protoc-gen-swift is built into a scratch package under ${TMPDIR:-/tmp} (about 2-10 min).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
proto_dir="$root/Sources/Sparkplug/Proto"
out_dir="$root/Sources/Sparkplug/Generated"
plugin="${1:-}"

command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler" >&2; exit 1; }

if [[ -z "$plugin" ]]; then
    work="${TMPDIR:-/tmp}/edgepilot-protoc-gen-swift"
    mkdir -p "$work/Sources/Dummy"
    cat > "$work/Package.swift" <<'PKG'
// swift-tools-version:6.1
import PackageDescription
let package = Package(
    name: "protogen",
    dependencies: [.package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0")],
    targets: [.target(name: "Dummy", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")])]
)
PKG
    echo "import SwiftProtobuf" > "$work/Sources/Dummy/Dummy.swift"
    (cd "$work" && swift build -c release -j 2 --product protoc-gen-swift)
    plugin="$work/.build/release/protoc-gen-swift"
fi

mkdir -p "$out_dir"
protoc --plugin=protoc-gen-swift="$plugin" \
    --swift_opt=Visibility=Internal \
    --swift_out="$out_dir" \
    -I "$proto_dir" "$proto_dir/sparkplug_b.proto"
echo "generated $out_dir/sparkplug_b.pb.swift"
