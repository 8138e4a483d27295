#!/usr/bin/env bash
# Re-fetch the console's vendored front-end files (htmx, its SSE extension, Leaflet) from the
# npm registry and rewrite connectors/console/static/vendor/ and its VENDORED.md.
#
# Why vendored: the console serves these files itself, so a browser in a command centre needs
# nothing from a CDN, and nothing is ever downloaded at run time. This script is run by a
# person, to move a pin in versions.txt; the server and the tests only read what it wrote.
#
# Exactly the versions in versions.txt (one name@version a line) are fetched with `npm pack`;
# each tarball's sha512 is checked against the registry's dist.integrity, and the licence its
# package.json declares against the one expected below, so a changed licence stops the
# refresh instead of slipping in. The output depends only on the tarballs: a second run gives
# no diff.
#
# Usage: ops/console-assets/refresh.sh   (needs node and npm; from any folder)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATIC="$REPO/connectors/console/static"
VENDOR="$STATIC/vendor"
VERSIONS="$HERE/versions.txt"

for tool in node npm tar install; do
    command -v "$tool" >/dev/null || { echo "refresh.sh: $tool is needed" >&2; exit 1; }
done

WORK="$(mktemp -d)"
STAGE="$STATIC/.vendor.new"
trap 'rm -rf "$WORK" "$STAGE"' EXIT
rm -rf "$STAGE"
mkdir -p "$STAGE"

# What is taken from each package: "path-in-tarball destination-under-vendor" lines, and the
# licence (SPDX) it is expected under. A package not listed here is refused: each new one
# needs a reviewed choice of files.
files_of() {
    case "$1" in
        htmx.org)
            echo "dist/htmx.min.js htmx/htmx.min.js"
            echo "LICENSE htmx/LICENSE" ;;
        htmx-ext-sse)
            echo "dist/sse.js htmx-ext-sse/sse.js"
            echo "LICENSE htmx-ext-sse/LICENSE" ;;
        leaflet)
            echo "dist/leaflet.js leaflet/leaflet.js"
            echo "dist/leaflet.css leaflet/leaflet.css"
            for image in layers-2x.png layers.png marker-icon-2x.png marker-icon.png \
                         marker-shadow.png; do
                echo "dist/images/$image leaflet/images/$image"
            done
            echo "LICENSE leaflet/LICENSE" ;;
        *)
            echo "refresh.sh: no file list for package '$1'; add one to files_of" >&2
            return 1 ;;
    esac
}

licence_of() {
    case "$1" in
        htmx.org) echo "0BSD" ;;
        # Its package.json declares no licence; its LICENSE file is the BSD Zero Clause text.
        htmx-ext-sse) echo "0BSD" ;;
        leaflet) echo "BSD-2-Clause" ;;
        *) return 1 ;;
    esac
}

# "sha512-<base64>" of a file, the form of npm's dist.integrity.
integrity_of() {
    node -e 'const c = require("crypto"), fs = require("fs");
             process.stdout.write("sha512-" + c.createHash("sha512")
                 .update(fs.readFileSync(process.argv[1])).digest("base64"));' "$1"
}

# One field of a package.json ("" when absent).
json_field() {
    node -e 'const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
             const v = p[process.argv[2]];
             process.stdout.write(typeof v === "string" ? v : "");' "$1" "$2"
}

ROWS=""
while IFS= read -r spec || [[ -n "$spec" ]]; do
    spec="${spec%%#*}"
    spec="$(echo "$spec" | tr -d '[:space:]')"
    [[ -z "$spec" ]] && continue
    name="${spec%@*}"
    version="${spec##*@}"
    [[ "$name" != "$spec" && -n "$name" && -n "$version" ]] \
        || { echo "refresh.sh: '$spec' in versions.txt is not name@version" >&2; exit 1; }
    mapping="$(files_of "$name")"
    licence="$(licence_of "$name")"

    echo "fetching $name@$version"
    expected="$(npm view "$name@$version" dist.integrity)"
    [[ "$expected" == sha512-* ]] \
        || { echo "refresh.sh: the registry gives no sha512 integrity for $spec" >&2; exit 1; }
    mkdir -p "$WORK/$name"
    tarball="$WORK/$name/$(npm pack --silent --pack-destination "$WORK/$name" "$name@$version")"
    actual="$(integrity_of "$tarball")"
    if [[ "$actual" != "$expected" ]]; then
        echo "refresh.sh: $spec: tarball sha512 $actual differs from the registry's $expected" >&2
        exit 1
    fi

    tar -xzf "$tarball" -C "$WORK/$name"
    package="$WORK/$name/package"
    [[ "$(json_field "$package/package.json" name)" == "$name" \
       && "$(json_field "$package/package.json" version)" == "$version" ]] \
        || { echo "refresh.sh: $spec: the tarball's package.json names another package" >&2; exit 1; }
    declared="$(json_field "$package/package.json" license)"
    if [[ -n "$declared" && "$declared" != "$licence" ]]; then
        echo "refresh.sh: $spec is now under '$declared', not '$licence': review it first" >&2
        exit 1
    fi

    taken=""
    while read -r source destination; do
        [[ -f "$package/$source" ]] \
            || { echo "refresh.sh: $spec has no $source" >&2; exit 1; }
        install -D -m 0644 "$package/$source" "$STAGE/$destination"
        taken="$taken${taken:+<br>}\`$source\` → \`$destination\`"
    done <<< "$mapping"
    ROWS="$ROWS| $name | $version | \`$expected\` | $licence | $taken |"$'\n'
done < "$VERSIONS"

cat > "$STAGE/VENDORED.md" <<EOF
# Vendored front-end files

The console serves these files itself (\`/static/vendor/...\`): a browser in a command centre
needs nothing from a CDN, and nothing is downloaded at run time. They are the packages' own
files from the npm registry, unchanged, each with its licence beside it.

Written by \`ops/console-assets/refresh.sh\` from the pins in
\`ops/console-assets/versions.txt\`; do not edit by hand. To move a pin, change
versions.txt and run the script: it fetches each tarball with \`npm pack\`, checks its sha512
against the registry's \`dist.integrity\` (the column below) and rewrites this folder.

| package | version | npm tarball integrity | licence | files taken (tarball → vendor/) |
|---|---|---|---|---|
$ROWS
htmx-ext-sse declares no licence in its package.json; its LICENSE file is the BSD Zero Clause
licence (0BSD), as is htmx's.
EOF

rm -rf "$VENDOR"
mv "$STAGE" "$VENDOR"
echo "wrote $VENDOR"
