"""The link between a wearable and the host: a serial port, a pseudo-terminal or a TCP connection.

Both ends are here. The device end (what `edgekd simulate` writes to) is a `Link`: `open_link` makes one of

- `SerialLink`: a serial device (/dev/ttyUSB0, COM3) or any pyserial URL (socket://HOST:PORT, loop://);
- `PtyLink`: a new pseudo-terminal, whose /dev/pts/N path a reader opens like a serial port;
- `ListenLink`: a TCP server for one reader at a time, which reaches it with pyserial's socket://HOST:PORT.

The host end (what `edgekd stream` reads from) is any of those through pyserial: `reader_opener` opens it,
`read_available` takes what has arrived, and `reopen` brings it back with backoff after the link drops.
`port_advice` is the one place that says what to do when a port does not open.

Only the standard library here (pyserial is imported when a port is opened): this runs where TensorFlow is not.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time

from edgekd.errors import UserError

# 921600 carries an sEMG + IMU layout of about 28 KB/s over a UART; USB CDC and sockets ignore it.
DEFAULT_BAUD = 921600

# --------------------------------------------------------------------------- port advice


def port_advice(port: str, error: Exception) -> str:
    """The line to show when `port` does not open: which port, what went wrong, and what to do about it."""
    if isinstance(error, ValueError):  # pyserial rejects the setting itself, before touching any device
        return (
            f"{port}: not a serial port setting pyserial accepts ({first_line(error)}); give a device path "
            f"such as /dev/ttyUSB0 or a URL such as socket://127.0.0.1:7000"
        )
    code = getattr(error, "errno", None)
    text = str(error).lower()
    if code == errno.EACCES or "permission" in text:
        fix = "no permission: add your user to the dialout group (sudo usermod -aG dialout $USER, then log in again)"
    elif code == errno.EBUSY or "busy" in text or "lock" in text:
        fix = "the port is busy: close the other program that has it open (a serial monitor, another simulator)"
    elif "refused" in text:
        fix = "nothing listens there: start the sending side first, or check the host and port"
    elif code == errno.ENOENT or "no such file" in text or "could not open port /" in text:
        fix = (
            "no such port: plug the device in, check the path (ls /dev/ttyUSB* /dev/ttyACM*), "
            "or list ports with `python -m serial.tools.list_ports`"
        )
    else:
        fix = "check the device path or URL (e.g. socket://127.0.0.1:7000) and that the device is connected"
    return f"{port}: cannot open it ({first_line(error)}); {fix}"


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_link_error(error: Exception) -> bool:
    """An error of the link itself (the device or the socket went away), as opposed to a bug."""
    import serial

    return isinstance(error, (serial.SerialException, OSError))


# --------------------------------------------------------------------------- backoff


class Backoff:
    """Delays between attempts to bring a link back: `first_s`, doubling up to `max_s`. A reconnect that
    fails fast must not spin a core, and one that keeps failing should still try every few seconds."""

    def __init__(self, first_s: float, max_s: float):
        self.first_s, self.max_s = first_s, max_s
        self.delay_s = first_s

    def next_delay(self) -> float:
        """The delay to wait now; the following one is twice as long (up to max_s)."""
        delay, self.delay_s = self.delay_s, min(self.delay_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self.delay_s = self.first_s


# --------------------------------------------------------------------------- the host end: reading


READER_BACKOFF = (0.5, 5.0)  # seconds: first retry, longest wait between retries


def reader_opener(port: str, baud: int):
    """open_port(first) for live.run_session: `port` as a non-blocking pyserial port (see read_available).
    The first open turns every failure into a UserError that says what to do; later ones raise for a retry."""
    import serial

    def open_port(first: bool):
        try:
            return serial.serial_for_url(port, baudrate=baud, timeout=0)
        except (serial.SerialException, OSError, ValueError) as e:
            if not first:
                raise serial.SerialException(str(e)) from None
            raise UserError(port_advice(port, e)) from None

    return open_port


def read_available(port, wait_s: float = 0.05) -> bytes:
    """Wait up to wait_s for data, then take all that has arrived in one read. The port is non-blocking
    (timeout 0); pyserial's in_waiting is no byte count for socket:// (it is 0 or 1), and reading byte by
    byte cost half a core at 28 KB/s. select() on the port works for serial devices, ptys and sockets on
    Linux and macOS."""
    ready, _, _ = select.select([port.fileno()], [], [], wait_s)
    return port.read(65536) if ready else b""


def reopen(open_port, log, sleep, give_up):
    """The port opened again, retrying with READER_BACKOFF; None once `give_up()` says so."""
    backoff = Backoff(*READER_BACKOFF)
    while not give_up():
        try:
            port = open_port(first=False)
            log("link back")
            return port
        except Exception as e:
            if not is_link_error(e):
                raise
            delay = backoff.next_delay()
            log(f"no link yet ({first_line(e)}); next try in {delay:.1f} s")
            sleep(delay)
    return None


# --------------------------------------------------------------------------- the device end: writing


class Link:
    """Where a device's bytes go. write() returns False when they could not be delivered (the link is down)."""

    def write(self, data: bytes) -> bool:
        raise NotImplementedError

    def drop(self) -> None:
        """Break the connection (the simulator's `disconnect` fault). Only a TCP server can really do it;
        elsewhere the fault is a silence, as when a radio link fades."""

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a reader is there to receive (a TCP client connected); True when one is."""
        return True

    def close(self) -> None:
        pass

    def describe(self) -> str:
        """Where a reader finds this link: a device path or a pyserial URL."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_link(port: str | None = None, pty: bool = False, listen: str | None = None, baud: int = DEFAULT_BAUD) -> Link:
    """Exactly one of: `port` (a serial device or pyserial URL), `pty` (a new pseudo-terminal), `listen`
    ("HOST:PORT", a TCP server; port 0 picks a free one)."""
    chosen = [name for name, given in (("--port", port), ("--pty", pty), ("--listen", listen)) if given]
    if len(chosen) != 1:
        raise UserError(f"give exactly one of --port, --pty, --listen (got {', '.join(chosen) or 'none'})")
    if port:
        return SerialLink(port, baud)
    if pty:
        return PtyLink()
    return ListenLink(listen)


class SerialLink(Link):
    """A serial device or any pyserial URL, written to.

    If a write fails (the device was unplugged, the TCP peer went away) the bytes count as lost and the
    port is reopened, at most once per REOPEN_S, so the replay carries on when the link comes back.
    """

    WRITE_TIMEOUT_S = 2.0
    REOPEN_S = 1.0

    def __init__(self, port: str, baud: int = DEFAULT_BAUD):
        self.port, self.baud = port, baud
        self._serial = self._open()
        self._backoff = Backoff(self.REOPEN_S, self.REOPEN_S)
        self._next_reopen = 0.0

    def _open(self):
        import serial  # pyserial: imported here so the simulator's planning works without it

        try:
            # exclusive: a second writer on the same device fails now ("busy") instead of interleaving bytes
            options = {} if "://" in self.port else {"exclusive": True}
            return serial.serial_for_url(self.port, baudrate=self.baud, write_timeout=self.WRITE_TIMEOUT_S, **options)
        except (serial.SerialException, OSError, ValueError) as e:
            raise UserError(port_advice(self.port, e)) from None

    def write(self, data: bytes) -> bool:
        import serial

        if self._serial is None and not self._reopen():
            return False
        try:
            self._serial.write(data)
            return True
        except serial.SerialTimeoutException:  # the reader is not keeping up: these bytes are lost, the port is fine
            return False
        except (serial.SerialException, OSError):
            self._close_port()
            return False

    def _reopen(self) -> bool:
        now = time.monotonic()
        if now < self._next_reopen:
            return False
        self._next_reopen = now + self._backoff.next_delay()
        try:
            self._serial = self._open()
        except UserError:
            return False
        self._backoff.reset()
        return True

    def _close_port(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # closing a port whose device vanished may fail; it is gone either way
                pass
            self._serial = None

    def close(self) -> None:
        self._close_port()

    def describe(self) -> str:
        return self.port


class PtyLink(Link):
    """A pseudo-terminal: the device writes the master side, a reader opens describe() (/dev/pts/N)
    as a serial port.

    We keep the slave side open ourselves, so the pty exists and buffers writes before any reader has
    opened it (and between readers). The buffer is a few KiB: once it is full, writes block until a
    reader drains it -- the simulator waits for its reader rather than losing bytes. Note that pyserial
    flushes the input buffer when it opens a port, so a reader sees only bytes written after it opened.
    """

    def __init__(self):
        self._master, self._slave = os.openpty()
        import tty  # POSIX only, like pseudo-terminals themselves

        tty.setraw(self._slave)  # bytes pass untouched: no echo, no newline translation
        self.path = os.ttyname(self._slave)

    def write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:  # os.write on a pty may take only part of the buffer
            view = view[os.write(self._master, view) :]
        return True

    def close(self, drain_timeout_s: float = 2.0) -> None:
        # Closing a pty discards what its reader has not read yet: wait (bounded) until the reader has it all.
        deadline = time.monotonic() + drain_timeout_s
        while self._slave >= 0 and self._unread() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def _unread(self) -> int:
        try:
            import fcntl
            import termios

            return struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    def describe(self) -> str:
        return self.path


class ListenLink(Link):
    """A TCP server for one reader at a time (pyserial: socket://HOST:PORT). A client that connects while
    another is served replaces it (a reader that reconnects has given up on its old connection). While no
    client is connected, writes return False: those bytes are lost, as a radio's would be, and the replay
    goes on. Use wait_ready() to hold the start until the first reader is there.
    """

    SEND_TIMEOUT_S = 2.0

    def __init__(self, address: str):
        host, port = _parse_address(address)
        try:
            self._server = socket.create_server((host, port))  # SO_REUSEADDR: restarting right away works
        except OSError as e:
            raise UserError(f"--listen {address}: cannot listen there ({e.strerror or e}); {_listen_fix(e)}") from None
        self._server.setblocking(False)
        self.host, self.port = host, self._server.getsockname()[1]
        self._client: socket.socket | None = None

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self._client is None:
            ready, _, _ = select.select([self._server], [], [], timeout)
            if ready:
                self._accept_pending()
        return self._client is not None

    def _accept_pending(self) -> None:
        """Take the newest waiting client, if any (without blocking)."""
        while True:
            try:
                client, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._close_client()
            client.setblocking(True)
            client.settimeout(self.SEND_TIMEOUT_S)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames are small and timely
            self._client = client

    def write(self, data: bytes) -> bool:
        self._accept_pending()
        if self._client is None:
            return False
        try:
            self._client.sendall(data)
            return True
        except OSError:  # reset, broken pipe, or a reader too slow for SEND_TIMEOUT_S: it is gone
            self._close_client()
            return False

    def drop(self) -> None:
        self._close_client()

    def _close_client(self) -> None:
        if self._client is not None:
            try:
                self._client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._client.close()
            self._client = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        self._close_client()
        self._server.close()

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"socket://{host}:{self.port}"


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UserError(f"--listen {address}: give HOST:PORT, e.g. 127.0.0.1:7000 (port 0 picks a free port)")
    return host, int(port)


def _listen_fix(error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return "the port is taken: choose another port or stop the program that uses it"
    if error.errno == errno.EACCES:
        return "ports below 1024 need root: choose a port above 1024"
    if error.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address: use 127.0.0.1 or one of its own addresses"
    return "check the host and port"
