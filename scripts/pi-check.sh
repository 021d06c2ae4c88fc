#!/usr/bin/env bash
# pi-check: does the device profile (`pip install edgekd`: numpy, scipy, click, pyserial, ai-edge-litert; no
# TensorFlow) work on a Raspberry Pi's OS? Raspberry Pi OS 64-bit is Debian bookworm arm64 with Python 3.11,
# so we build that root file system once, run it under qemu-user emulation, install edgekd the way the
# README tells a Pi user, and check bench, offline outputs and a live stream against the x86_64 host.
#
#   bash scripts/pi-check.sh          (root: chroot, mounts, binfmt; the host .venv from `make` trains the model)
#
# Cached outside the repo in $EDGEKD_PI_CACHE (default ~/.cache/edgekd/pi): the rootfs (built once; a stamp
# written last marks it complete), the .debs it was built from, the venv inside it (only the edgekd wheel is
# reinstalled each run) and the models (per repo commit). Results: benchmarks/out/pi-check/ and
# benchmarks/out/pi-check.md. Latencies under emulation are not device numbers; the report says so.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EDGEKD_PI_CACHE:-$HOME/.cache/edgekd/pi}
ROOTFS=$CACHE/rootfs
ROOTFS_STAMP=$CACHE/rootfs.ok           # written last: a rootfs without it is half-built and is rebuilt
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates
VENV=/opt/edgekd-venv                   # inside the rootfs, where a Pi user's `python3 -m venv` would be
VENV_STAMP=$VENV/.edgekd-deps-ok        # inside the rootfs: the dependencies installed completely once
WORK=/tmp/pi-check                      # inside the rootfs: this run's wheel, models and outputs
OUT=$REPO/benchmarks/out/pi-check
REPORT=$REPO/benchmarks/out/pi-check.md
HOST_BIN=$REPO/.venv/bin
MYO5=$REPO/edgekd/datasets/myo5
STREAM_RECORDINGS=14,10,11,13           # 14 and 13 are padding, see the stream phase; 10 and 11 are checked
STREAM_CHECKED=10,11
SIM_PID='' READER_PID=''
# Set while a phase runs that only prepares this host (root, apt, binfmt_misc, the Debian rootfs). If one of
# those fails, the machine cannot emulate arm64 and nothing about edgekd was checked: the script then exits
# with ENVIRONMENT_UNAVAILABLE (EX_TEMPFAIL), which .ci/run reports as "not run" instead of a failure. Every
# failure of edgekd itself (install, bench, outputs, stream) exits 1.
ENVIRONMENT_PHASE=''
ENVIRONMENT_UNAVAILABLE=75

log() { printf '[pi-check %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }
# A phase's wall time goes to timings.tsv (for the report) as: name, seconds, note. The phase may set
# NOTE to say what it did (cached or built).
timed() {
    local name=$1 start end
    NOTE=$2
    shift 2
    start=$(now_us)
    "$@"
    end=$(now_us)
    printf '%s\t%d.%d\t%s\n' "$name" $(((end - start) / 1000000)) $(((end - start) / 100000 % 10)) "$NOTE" >>"$OUT/timings.tsv"
}
# Long, chatty commands write to a log under $OUT; on failure we show its end.
logged() {
    local name=$1
    shift
    if ! "$@" >"$OUT/$name.log" 2>&1; then
        tail -n 30 "$OUT/$name.log" >&2
        die "$name (full log: $OUT/$name.log)"
    fi
}
# Same, for commands whose stdout we keep: only stderr goes to $OUT/NAME.err (LiteRT's INFO lines, and the
# cpuinfo complaints of emulation, see mount_chroot).
stderr_to() {
    local name=$1
    shift
    if ! "$@" 2>"$OUT/$name.err"; then
        tail -n 30 "$OUT/$name.err" >&2
        die "$name (stderr: $OUT/$name.err)"
    fi
}
# Commands inside the arm64 rootfs: a clean environment, so the host's PIP_* settings (local wheel
# folders) do not leak into what should be a plain Pi's pip talking to PyPI.
in_chroot() {
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# ------------------------------------------------------------------------------------------- mounts
# Everything mounted below the rootfs, deepest first (from /proc/mounts, so leftovers of a run that was
# killed with -9 are found too).
mounts_below() {
    awk -v root="$ROOTFS/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r
}
unmount_all() {
    local m
    for m in $(mounts_below); do
        umount "$m" 2>/dev/null || umount -l "$m" || log "WARNING: could not unmount $m"
    done
}
mount_chroot() {
    local d
    for d in proc dev dev/pts; do  # /dev/pts separately: a --bind of /dev does not carry its submounts
        mkdir -p "$ROOTFS/$d"
        mountpoint -q "$ROOTFS/$d" || mount --bind "/$d" "$ROOTFS/$d"
    done
    # Not /sys: with the host's /sys visible, LiteRT's cpuinfo (XNNPACK) finds x86 CPUs where it expects
    # arm64 ones and the emulated Python dies with SIGSEGV when an interpreter is created. Without /sys it
    # prints "Error in cpuinfo: failed to parse the list of possible processors" and runs fine. An artefact
    # of qemu-user (a Pi has a consistent /sys), not of the package.
}
cleanup() {
    local rc=$?
    set +e
    # Our own background processes only, by their ids (a stopped simulator needs CONT to see the TERM).
    for pid in $READER_PID $SIM_PID; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; kill -CONT "$pid"; wait "$pid"; fi
    done 2>/dev/null
    [ -d "$ROOTFS" ] && unmount_all
    if [ -n "$(mounts_below 2>/dev/null)" ]; then log "WARNING: still mounted: $(mounts_below | tr '\n' ' ')"; fi
    [ "$rc" = 0 ] || log "stopped (exit status $rc); background processes ended, chroot mounts removed"
    if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ -n "$ENVIRONMENT_PHASE" ]; then
        log "this host cannot run the emulated check ($ENVIRONMENT_PHASE failed); exit status $ENVIRONMENT_UNAVAILABLE"
        rc=$ENVIRONMENT_UNAVAILABLE
    fi
    exit "$rc"
}

# ----------------------------------------------------------------------------------- host prerequisites
check_host() {
    [ "$(id -u)" = 0 ] || die "run as root (chroot, bind mounts and binfmt_misc need it)"
    case $ROOTFS in *[[:space:]]*) die "EDGEKD_PI_CACHE must not contain spaces: $CACHE" ;; esac
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} (Debian packages)"
        logged apt-install sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
    fi
}

# arm64 binaries run through qemu-aarch64 via binfmt_misc. With the F (fix-binary) flag the kernel opens the
# interpreter when it is registered, so it works inside the chroot too; Debian's qemu-user-static registers
# it with F. A registration without F (another tool's) needs the interpreter inside the rootfs, see below.
BINFMT=/proc/sys/fs/binfmt_misc
setup_binfmt() {
    [ -e $BINFMT/status ] || mount -t binfmt_misc binfmt_misc $BINFMT
    if [ ! -e $BINFMT/qemu-aarch64 ] || ! grep -qx enabled $BINFMT/qemu-aarch64; then
        update-binfmts --enable qemu-aarch64
    fi
    grep -qx enabled $BINFMT/qemu-aarch64 || die "qemu-aarch64 is not enabled in binfmt_misc"
}
copy_interpreter_if_needed() {
    local interp
    if ! grep -q '^flags:.*F' $BINFMT/qemu-aarch64; then
        interp=$(awk '$1 == "interpreter" { print $2 }' $BINFMT/qemu-aarch64)
        mkdir -p "$ROOTFS$(dirname "$interp")"
        cp /usr/bin/qemu-aarch64-static "$ROOTFS$interp"
    fi
}

detect_mirror() {  # the Debian mirror apt already uses on this machine, else deb.debian.org
    local uri
    uri=$({
        grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ for (i = 2; i <= NF; i++) print $i }'
        grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
            awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }'
    } | grep -E '^https?://[^ ]*/debian/?$' | head -n 1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# ------------------------------------------------------------------------------------------- rootfs
build_rootfs() {
    if [ -f "$ROOTFS_STAMP" ]; then NOTE=cached; return; fi
    local mirror
    mirror=${EDGEKD_PI_MIRROR:-$(detect_mirror)}
    if [ -e "$ROOTFS" ]; then  # an interrupted build: start over; the downloaded .debs are kept in $CACHE/debs
        log "removing the incomplete rootfs of an interrupted build"
        unmount_all
        [ -z "$(mounts_below)" ] || die "mounts remain below $ROOTFS; not removing it"
        rm -rf --one-file-system "$ROOTFS"
    fi
    mkdir -p "$ROOTFS" "$CACHE/debs"
    # Stage one on the host (download, unpack); stage two runs the arm64 maintainer scripts under qemu.
    log "debootstrap $SUITE arm64 from $mirror, stage 1 (download and unpack)"
    logged debootstrap-1 debootstrap --foreign --arch=arm64 --variant=minbase --include=$PACKAGES \
        --cache-dir="$CACHE/debs" $SUITE "$ROOTFS" "$mirror"
    copy_interpreter_if_needed
    log "debootstrap stage 2 (configure, emulated; several minutes)"
    logged debootstrap-2 in_chroot /debootstrap/debootstrap --second-stage
    unmount_all  # stage two mounts /proc and /sys inside on its own
    printf 'debootstrap --arch=arm64 --variant=minbase --include=%s %s %s %s\n%s\n' \
        "$PACKAGES" $SUITE "$ROOTFS" "$mirror" "$(date -u +%FT%TZ)" >"$ROOTFS_STAMP"
}

# --------------------------------------------------------------------------------------- host models
# Distil and export on the host (TensorFlow lives there only), once per commit of the training code.
build_models() {
    local key
    # Keyed by the committed code that makes the model (data, distill, export, presets, pinned versions): the
    # models are only test input, the same file runs on both sides, so a commit elsewhere (runtime, stream,
    # docs) or a local edit need not retrain; EDGEKD_PI_REBUILD_MODELS=1 forces it.
    key=$(git -C "$REPO" ls-tree HEAD edgekd/data edgekd/distill edgekd/export edgekd/models edgekd/_tf.py \
        models pyproject.toml requirements | sha1sum | cut -c1-12)
    MODELS=$CACHE/models/$key
    # Models of other commits are not needed again: keep the cache small.
    find "$CACHE/models" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} + 2>/dev/null || true
    echo "commit=$(git -C "$REPO" rev-parse --short=12 HEAD)$(git -C "$REPO" diff --quiet HEAD -- edgekd \
        firmware_bridge models pyproject.toml || echo ' (+ local changes)')" >>"$OUT/meta.txt"
    if [ -f "$MODELS/.ok" ] && [ "${EDGEKD_PI_REBUILD_MODELS:-0}" != 1 ]; then
        NOTE="cached (model code $key)"
        return
    fi
    NOTE="distill + export fp32, int8 (model code $key)"
    rm -rf "$MODELS"
    mkdir -p "$MODELS"
    log "distilling a small model on the host (myo5, 8 epochs, 1 teacher)"
    logged distill "$HOST_BIN/edgekd" distill "$MYO5" --out "$MODELS/run" --test-on 2 --val-on 1 --teachers 1 \
        --epochs 8 --quiet
    logged export-fp32 "$HOST_BIN/edgekd" export "$MODELS/run" --float32 --out "$MODELS/student-fp32.tflite"
    logged export-int8 "$HOST_BIN/edgekd" export "$MODELS/run" --int8 --out "$MODELS/student-int8.tflite"
    touch "$MODELS/.ok"
}

# ---------------------------------------------------------------------------------------- install
build_wheel() {
    rm -rf "$OUT/wheel"
    logged wheel "$HOST_BIN/pip" wheel --no-deps -w "$OUT/wheel" "$REPO"
    WHEEL=$(basename "$(ls "$OUT"/wheel/edgekd-*.whl)")
    echo "wheel=$WHEEL" >>"$OUT/meta.txt"
}
stage_files() {  # this run's inputs into the rootfs (a plain folder in its /tmp, replaced every run)
    rm -rf "${ROOTFS:?}$WORK"
    mkdir -p "$ROOTFS$WORK/models" "$ROOTFS$WORK/out"
    cp "$OUT/wheel/$WHEEL" "$ROOTFS$WORK/"
    cp "$MODELS"/student-*.tflite "$ROOTFS$WORK/models/"
    cp "$REPO/scripts/pi_compare.py" "$ROOTFS$WORK/"
    cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"  # pip in the chroot reaches PyPI by name
    # pip in the chroot trusts what the host trusts: where TLS goes through an inspecting proxy (as on our
    # build machines), its CA is in the host's bundle only. On an open network the two bundles agree.
    cp -L "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOTFS$WORK/host-ca-bundle.crt"
}
install_edgekd() {
    # As the README tells a Pi user: a venv, then `pip install edgekd` (here the wheel of this checkout),
    # which pulls numpy, scipy, click, pyserial and ai-edge-litert for aarch64 from PyPI. The venv is kept;
    # the next run uninstalls edgekd and installs the new wheel the same way, so a dependency added to
    # pyproject.toml is still resolved, and the others are already satisfied (no download).
    if [ ! -f "$ROOTFS$VENV_STAMP" ]; then
        rm -rf "${ROOTFS:?}$VENV"
        in_chroot python3 -m venv $VENV
        NOTE="new venv, dependencies from PyPI"
    else
        NOTE="cached venv, edgekd wheel reinstalled"
        logged pip-uninstall in_chroot $VENV/bin/pip uninstall -y edgekd
    fi
    log "pip install $WHEEL in the arm64 venv ($NOTE)"
    logged pip-install in_chroot PIP_CERT=$WORK/host-ca-bundle.crt $VENV/bin/pip install "$WORK/$WHEEL"
    touch "$ROOTFS$VENV_STAMP"
    in_chroot $VENV/bin/pip freeze >"$OUT/pip-freeze-arm64.txt"
    "$HOST_BIN/pip" freeze --exclude-editable >"$OUT/pip-freeze-host.txt"
}

# ------------------------------------------------------------------------------------------ checks
check_arm() {
    # The bundled dataset as installed from the wheel (package data), not the repo's copy.
    MYO5_ARM=$(in_chroot $VENV/bin/python -c \
        'import edgekd.datasets, pathlib; print(pathlib.Path(edgekd.datasets.__file__).parent / "myo5")')
    local tf
    tf=$(in_chroot $VENV/bin/python -c 'import importlib.util; print(importlib.util.find_spec("tensorflow") is not None)')
    echo "tensorflow_on_arm=$tf" >>"$OUT/meta.txt"
    [ "$tf" = False ] || die "tensorflow is importable in the ARM venv; the device profile must not pull it in"
    {
        echo "debian_version=$(cat "$ROOTFS/etc/debian_version")"
        echo "arm_python=$(in_chroot $VENV/bin/python -c 'import platform; print("Python", platform.python_version(), platform.machine())')"
        echo "qemu=$(/usr/bin/qemu-aarch64-static --version | head -n 1)"
    } >>"$OUT/meta.txt"
    grep -q aarch64 "$OUT/meta.txt" || die "the chroot's Python does not report aarch64"
}
bench_arm() {
    log "edgekd bench inside the chroot (emulated)"
    stderr_to bench-arm64 in_chroot $VENV/bin/edgekd bench $WORK/models/student-fp32.tflite \
        $WORK/models/student-int8.tflite --data "$MYO5_ARM" --runs 50 --json $WORK/out/bench-arm64.json >"$OUT/bench-arm64.txt"
    cp "$ROOTFS$WORK/out/bench-arm64.json" "$OUT/"
    grep -q '"runtime": "ai-edge-litert' "$OUT/bench-arm64.json" || die "bench on ARM did not use ai-edge-litert"
    stderr_to bench-host "$HOST_BIN/edgekd" bench "$MODELS/student-fp32.tflite" "$MODELS/student-int8.tflite" \
        --data "$MYO5" --runs 50 --json "$OUT/bench-host.json" >"$OUT/bench-host.txt"
}
# `edgekd personalize` is device side too: the int8 student fitted to myo5's repetition 0, on ARM and then on the host;
# the report's timings table gives both (the ratio is what emulation says about a Pi, not a Pi's own figure).
personalize_arm() {
    log "edgekd personalize inside the chroot (emulated), then on the host"
    timed personalize-arm64 "myo5 repetition 0, int8, emulated" stderr_to personalize-arm64 in_chroot \
        $VENV/bin/edgekd personalize $WORK/models/student-int8.tflite "$MYO5_ARM" --where repetition=0 \
        --out $WORK/out/personal-int8-arm64.tflite >"$OUT/personalize-arm64.txt"
    timed personalize-host "myo5 repetition 0, int8" stderr_to personalize-host "$HOST_BIN/edgekd" personalize \
        "$MODELS/student-int8.tflite" "$MYO5" --where repetition=0 --out "$OUT/personal-int8-host.tflite" \
        >"$OUT/personalize-host.txt"
    cp "$ROOTFS$WORK/out/personal-int8-arm64.tflite" "$OUT/"
}
# `edgekd simulate` is part of the device profile too: run it on ARM as a TCP server (it waits for its
# client, so nothing is lost) and read it from the host with `edgekd stream`: every window of the recording
# must arrive.
simulate_arm() {
    local url='' i
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/bin:/bin \
        $VENV/bin/edgekd simulate "$MYO5_ARM" --listen 127.0.0.1:0 --recordings 10 --speed 0 2>"$OUT/simulate-arm64.err" &
    SIM_PID=$!
    for i in $(seq 1200); do
        url=$(grep -o -m 1 'socket://[0-9.]*:[0-9]*' "$OUT/simulate-arm64.err" || true)
        [ -n "$url" ] && break
        kill -0 $SIM_PID 2>/dev/null || die "edgekd simulate on ARM exited: $(cat "$OUT/simulate-arm64.err")"
        sleep 0.1
    done
    [ -n "$url" ] || die "edgekd simulate on ARM printed no address: $(cat "$OUT/simulate-arm64.err")"
    "$HOST_BIN/edgekd" stream --port "$url" --model "$MODELS/student-int8.tflite" --jsonl --idle-exit 2 \
        >"$OUT/simulate-arm64.stream.jsonl" 2>"$OUT/simulate-arm64.stream.err" ||
        die "edgekd stream on the host, reading the ARM simulator, failed: $(cat "$OUT/simulate-arm64.stream.err")"
    wait $SIM_PID || die "edgekd simulate on ARM failed: $(cat "$OUT/simulate-arm64.err")"
    SIM_PID=''
    SIMULATE_ARM_WINDOWS=$(grep -c '^{' "$OUT/simulate-arm64.stream.jsonl" || true)
    local expected
    expected=$("$HOST_BIN/python" -c 'import numpy, sys; print(len(numpy.load(sys.argv[1])))' \
        "$OUT/probs-arm64/student-int8.stream-ref.10.npy")
    [ "$SIMULATE_ARM_WINDOWS" = "$expected" ] ||
        die "the host received $SIMULATE_ARM_WINDOWS windows from the ARM simulator, expected $expected: $(cat "$OUT/simulate-arm64.stream.err")"
    NOTE="ARM simulate --listen -> host stream: $SIMULATE_ARM_WINDOWS/$expected windows of recording 10"
}
compare_outputs() {
    log "model outputs on the test windows: host vs ARM"
    logged probs-host "$HOST_BIN/python" "$REPO/scripts/pi_compare.py" probs "$MODELS/student-fp32.tflite" \
        "$MODELS/student-int8.tflite" --data "$MYO5" --out "$OUT/probs-host"
    mkdir -p "$ROOTFS$WORK/host-windows"
    cp "$OUT"/probs-host/*.windows.npy "$OUT"/probs-host/*.labels.npy "$ROOTFS$WORK/host-windows/"
    # One emulated Python for both: ARM's own windows (end to end), plus the stream's offline reference.
    logged probs-arm64 in_chroot $VENV/bin/python $WORK/pi_compare.py probs $WORK/models/student-fp32.tflite \
        $WORK/models/student-int8.tflite --data "$MYO5_ARM" --out $WORK/out/probs-arm64 \
        --stream-ref $STREAM_RECORDINGS --speed 2
    logged probs-arm64-same-input in_chroot $VENV/bin/python $WORK/pi_compare.py probs $WORK/models/student-fp32.tflite \
        $WORK/models/student-int8.tflite --data "$MYO5_ARM" --out $WORK/out/probs-arm64-same-input \
        --windows-from $WORK/host-windows
    cp -r "$ROOTFS$WORK/out/probs-arm64" "$ROOTFS$WORK/out/probs-arm64-same-input" "$OUT/"
    "$HOST_BIN/python" "$REPO/scripts/pi_compare.py" compare --host "$OUT/probs-host" --arm "$OUT/probs-arm64" \
        --arm-same "$OUT/probs-arm64-same-input" --out "$OUT/compare.json"
}

# A live session: the simulator on the host writes a pseudo-terminal, `edgekd stream` in the chroot reads
# it (the chroot has the host's /dev/pts bound in). Bytes get lost at both ends of a pty session unless the
# order is made deterministic, which is what this does:
#   - start: pyserial flushes what waits in a port when it opens it, and the emulated reader takes seconds
#     to start. So the simulator is stopped (SIGSTOP) as soon as it prints its /dev/pts/N, and continued
#     (SIGCONT) only once /proc shows the reader holding the pty open, plus a second for pyserial's flush.
#     A padding recording (14) goes first, for the few bytes sent before the stop.
#   - end: a simulator that ends closes the pty at once, and the kernel discards whatever the (emulated,
#     slower) reader has not read yet. So it runs with --loop, and once the reader has decided on a window
#     past recording 11 it is stopped again; the reader drains the pty, goes idle and leaves by --idle-exit;
#     then the simulator is ended. A padding recording (13) goes last.
# Recordings 10 and 11 must each arrive as one segment (0.5 s device pause between recordings) whose windows
# equal offline inference on ARM, window for window. Frames due while the simulator was stopped go out
# back to back after it, so this session's latencies measure emulation and backlog, not the device.
stream_check() {
    local pts='' i end_s
    local sim_cmd="edgekd simulate edgekd/datasets/myo5 --pty --loop --recordings $STREAM_RECORDINGS --speed 2"
    local stream_args=(--model $WORK/models/student-int8.tflite --jsonl --idle-exit 3)
    # Device time (s) at which the last checked recording ends (from the ARM side's simulator schedule).
    end_s=$("$HOST_BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["spans_s"][sys.argv[2]][1])' \
        "$OUT/probs-arm64/stream-schedule.json" "${STREAM_CHECKED##*,}")
    "$HOST_BIN/edgekd" simulate "$MYO5" --pty --loop --recordings $STREAM_RECORDINGS --speed 2 2>"$OUT/simulate.err" &
    SIM_PID=$!
    for i in $(seq 600); do  # the path comes as the first line on stderr
        pts=$(grep -o -m 1 '/dev/pts/[0-9]*' "$OUT/simulate.err" || true)
        [ -n "$pts" ] && break
        kill -0 $SIM_PID 2>/dev/null || die "the simulator exited: $(cat "$OUT/simulate.err")"
        sleep 0.01
    done
    kill -STOP $SIM_PID
    [ -n "$pts" ] || die "the simulator printed no pty path: $(cat "$OUT/simulate.err")"
    log "simulator on $pts (paused); starting edgekd stream in the chroot"
    echo "simulate_cmd=$sim_cmd" >>"$OUT/meta.txt"
    echo "stream_cmd=edgekd stream --port $pts ${stream_args[*]}" >>"$OUT/meta.txt"
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/bin:/bin \
        $VENV/bin/edgekd stream --port "$pts" "${stream_args[@]}" >"$OUT/stream.jsonl" 2>"$OUT/stream.err" &
    READER_PID=$!
    for i in $(seq 1200); do
        if ls -l /proc/$READER_PID/fd 2>/dev/null | grep -q "dev/pts/${pts##*/}\$"; then break; fi
        kill -0 $READER_PID 2>/dev/null || die "edgekd stream exited early: $(cat "$OUT/stream.err")"
        sleep 0.1
    done
    ls -l /proc/$READER_PID/fd 2>/dev/null | grep -q "dev/pts/${pts##*/}\$" || die "edgekd stream never opened $pts"
    sleep 1  # pyserial configures and flushes right after the open
    kill -CONT $SIM_PID
    for i in $(seq 1800); do  # until a decision past the checked recordings (click flushes every line)
        if grep -o '"end_time_s": [0-9.]*' "$OUT/stream.jsonl" | awk -v e="$end_s" '$2 > e + 1e-6 { f = 1 } END { exit !f }'; then
            break
        fi
        kill -0 $READER_PID 2>/dev/null || die "edgekd stream ended early: $(cat "$OUT/stream.err")"
        sleep 0.1
    done
    kill -STOP $SIM_PID  # no more bytes: the reader drains the pty and leaves after --idle-exit 3
    wait $READER_PID || die "edgekd stream failed: $(cat "$OUT/stream.err")"
    READER_PID=''
    kill -TERM $SIM_PID
    kill -CONT $SIM_PID
    wait $SIM_PID || true  # ended by our TERM
    SIM_PID=''
    # Expected on stderr: the banner and the counters (and LiteRT's and emulation's notes). Anything else,
    # a lost link included, is a problem.
    if grep -vE '^(listening on |counters: |INFO: Created TensorFlow Lite XNNPACK|Error in cpuinfo: failed to parse)' \
        "$OUT/stream.err" | grep -q .; then
        die "edgekd stream printed unexpected messages: $(cat "$OUT/stream.err")"
    fi
    "$HOST_BIN/python" "$REPO/scripts/pi_compare.py" stream --jsonl "$OUT/stream.jsonl" --ref "$OUT/probs-arm64" \
        --stem student-int8 --check $STREAM_CHECKED --out "$OUT/stream-check.json"
}

# --------------------------------------------------------------------------------------------- main
main() {
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"  # one pi-check at a time per cache: they share the rootfs and its mounts
    flock -n 9 || die "another pi-check holds $CACHE/.lock"
    rm -rf "$OUT"
    mkdir -p "$OUT"
    echo "date=$(date -u +'%F %T UTC')" >"$OUT/meta.txt"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    local t0
    t0=$(now_us)

    [ -x "$HOST_BIN/edgekd" ] || die "no $HOST_BIN/edgekd: run \`make test\` or \`make demo\` once (the host trains the model)"
    ENVIRONMENT_PHASE="host setup (root, apt packages, binfmt_misc)"
    timed host-setup "apt packages, binfmt_misc" eval 'check_host; setup_binfmt'
    ENVIRONMENT_PHASE=''
    unmount_all  # leftovers of a killed run
    timed host-models "" build_models
    ENVIRONMENT_PHASE="building the Debian arm64 root file system (debootstrap)"
    timed rootfs "debootstrap, stage 2 emulated" build_rootfs
    ENVIRONMENT_PHASE=''
    copy_interpreter_if_needed
    timed wheel "pip wheel on the host" build_wheel
    stage_files
    mount_chroot
    timed arm-install "" install_edgekd
    timed arm-checks "aarch64 Python, no tensorflow" check_arm
    timed arm-bench "edgekd bench --runs 50, ARM then host" bench_arm
    timed compare "host vs ARM logits" compare_outputs
    personalize_arm
    timed arm-simulate "" simulate_arm
    timed stream "host simulator -> pty -> ARM edgekd stream" stream_check
    unmount_all
    local t1
    t1=$(now_us)
    printf 'total\t%d.%d\t%s\n' $(((t1 - t0) / 1000000)) $(((t1 - t0) / 100000 % 10)) "this run" >>"$OUT/timings.tsv"
    "$HOST_BIN/python" "$REPO/scripts/pi_compare.py" report --dir "$OUT" --out "$REPORT"
    log "OK; report: $REPORT"
}

main "$@"
