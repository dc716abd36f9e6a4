"""A real SMTP server (aiosmtpd) for the SMTP adapter's tests: prints its port,
appends every accepted message to the file named by argv[1] as a JSON line,
refuses RCPT for addresses starting with "reject" (550) and "busy" (451),
and accepts AUTH PLAIN/LOGIN for user "shop" with password "secret"."""
import errno
import json
import random
import socket
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, path):
        self.path = path

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with open(self.path, "a") as fh:
            fh.write(json.dumps({
                "from": envelope.mail_from, "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
                "login": session.authenticated and "shop",
            }) + "\n")
        return "250 2.0.0 queued as 42"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"shop" and auth_data.password == b"secret"
    return AuthResult(success=ok)


def ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# A port below the kernel's ephemeral range (no outgoing connection is ever given one), tried until one
# binds: a port picked by binding port 0 and closing it could be taken again before the server binds it.
high = min(ephemeral_low(), 32768)
for attempt in range(100):
    port = random.randrange(max(1024, high - 12000), high)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))  # a taken port is passed over at once, not after ready_timeout
        except OSError:
            continue
    # ready_timeout: a loaded machine may take longer than the default 5 s to start the server's thread.
    controller = Controller(Sink(sys.argv[1]), hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False, auth_required=False, ready_timeout=60)
    try:
        controller.start()
        break
    except OSError as error:
        if error.errno != errno.EADDRINUSE or attempt == 99:
            raise
print(port, flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    controller.stop()
