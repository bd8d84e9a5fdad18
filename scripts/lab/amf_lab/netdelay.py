"""Delays the packets of one netfilter queue: each packet the kernel queues (an nftables rule
`... queue num QUEUE bypass`) is accepted DELAY_MS after it arrived, in arrival order. This kernel
has no netem; its nfnetlink_queue is enough for a fixed delay. While no delayer listens, the rule's
`bypass` lets the packets through.

Usage: python3 -m amf_lab.netdelay QUEUE DELAY_MS   (root, in the namespace whose packets it delays;
SIGTERM ends it, accepting what it holds)

The netlink messages (linux/netfilter/nfnetlink_queue.h): a config message binds the queue with
copy mode "meta" (no payload); each packet message carries its id in NFQA_PACKET_HDR; a verdict
message accepts it by id.
"""
import collections
import errno
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def attribute(kind, payload):
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * ((4 - size % 4) % 4)


def message(kind, queue, attributes, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attributes)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def attributes(data):
    """{type: payload} of the attributes in data."""
    out, offset = {}, 0
    while offset + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        out[kind & 0x7fff] = data[offset + 4:offset + size]
        offset += (size + 3) & ~3
    return out


def packets(data):
    """The ids of the packet messages in one netlink read; raises OSError on a netlink error."""
    ids, offset = [], 0
    while offset + 16 <= len(data):
        size, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
        if size < 16:
            break
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, offset + 16)[0]
            if code:
                raise OSError(-code, "nfnetlink_queue: %s" % errno.errorcode.get(-code, code))
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            header = attributes(data[offset + 20:offset + size]).get(NFQA_PACKET_HDR)
            if header:
                ids.append(struct.unpack_from("!I", header)[0])
        offset += (size + 3) & ~3
    return ids


def bind(queue):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    for seq, attr in enumerate((
            attribute(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0)),
            attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META) + b"\0\0\0")), 1):
        sock.send(message(NFQNL_MSG_CONFIG, queue, [attr], NLM_F_REQUEST | NLM_F_ACK, seq))
        packets(sock.recv(65536))  # the acknowledgement: raises if the kernel refused
    return sock


def accept(sock, queue, packet_id):
    verdict = attribute(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
    sock.send(message(NFQNL_MSG_VERDICT, queue, [verdict]))


def serve(queue, delay_s):
    sock = bind(queue)
    held = collections.deque()  # (due, id), in arrival order: due times only grow
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print("netdelay: queue %d, %.0f ms" % (queue, delay_s * 1000), flush=True)
    count = 0
    while not stopping:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 1.0
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if ready:
            now = time.monotonic()
            ids = packets(sock.recv(65536))
            count += len(ids)
            held.extend((now + delay_s, i) for i in ids)
        now = time.monotonic()
        while held and held[0][0] <= now:
            accept(sock, queue, held.popleft()[1])
    while held:
        accept(sock, queue, held.popleft()[1])
    print("netdelay: held %d packets %.0f ms each" % (count, delay_s * 1000), flush=True)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    try:
        queue, delay_ms = int(argv[1]), int(argv[2])
    except ValueError:
        print("netdelay: QUEUE and DELAY_MS are integers: %s" % " ".join(argv[1:]), file=sys.stderr)
        return 64
    if not 0 <= queue <= 65535 or not 0 <= delay_ms <= 10000:
        print("netdelay: QUEUE must be 0..65535 and DELAY_MS 0..10000", file=sys.stderr)
        return 64
    try:
        serve(queue, delay_ms / 1000.0)
    except OSError as e:
        print("netdelay: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
