# Escape corpus: run *inside* a sandbox. Every attempt prints
# "name BLOCKED detail" or "name ESCAPED detail". The Rust test asserts that
# nothing escaped and that every expected probe ran.
import ctypes, errno, os, socket, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
HOST_PORT = int(sys.argv[1])
HOST_PID = int(sys.argv[2])

def out(name, blocked, detail=""):
    print(f"{name} {'BLOCKED' if blocked else 'ESCAPED'} {detail}", flush=True)

def sysc(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r, ctypes.get_errno()

def denied(name, nr, *args):
    r, e = sysc(nr, *args)
    out(name, r == -1 and e in (errno.EPERM, errno.EACCES, errno.ENOSYS), f"rc={r} errno={errno.errorcode.get(e, e)}")

# --- host files
out("read_host_shadow", not os.path.exists("/etc/shadow"), "")
out("host_root_home_empty", os.listdir("/root") == [] if os.access("/root", os.R_OK) else True, "")
out("host_home_absent", os.listdir("/home") == ["user"], str(os.listdir("/home")))
out("host_marker_invisible", not os.path.exists(sys.argv[3]), sys.argv[3])
for path in ["/usr/aibox-escape", "/proc/sys/kernel/aibox", "/dev/aibox-escape", "/sys/aibox",
             "/proc/sys/kernel/hostname", "/proc/sysrq-trigger", "/proc/irq/default_smp_affinity",
             "/proc/sys/vm/drop_caches", "/proc/sys/kernel/core_pattern"]:
    try:
        open(path, "w").write("1")
        out("write_" + path.replace("/", "_"), False, "wrote")
    except OSError as e:
        out("write_" + path.replace("/", "_"), True, errno.errorcode.get(e.errno, ""))

# --- network: the host's loopback is another network namespace
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", HOST_PORT))
    out("connect_host_loopback", False, "connected")
except OSError as e:
    out("connect_host_loopback", True, str(e))
ifaces = os.listdir("/sys/class/net") if os.path.exists("/sys/class/net") else [n for _, n in socket.if_nameindex()]
out("only_loopback", ifaces == ["lo"], str(ifaces))
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    out("raw_packet_socket", False, "opened")
except OSError as e:
    out("raw_packet_socket", True, errno.errorcode.get(e.errno, ""))

# --- kernel interfaces (x86_64 numbers)
os.makedirs("/tmp/m", exist_ok=True)
r = libc.mount(b"tmpfs", b"/tmp/m", b"tmpfs", 0, None)
out("mount", r == -1, f"errno={errno.errorcode.get(ctypes.get_errno(), '')}")
denied("unshare_userns", 272, 0x10000000)
denied("unshare_mountns", 272, 0x00020000)
denied("setns", 308, 0, 0)
denied("ptrace_attach_pid1", 101, 16, 1, 0, 0)
denied("ptrace_attach_host_pid", 101, 16, HOST_PID, 0, 0)
denied("init_module", 175, 0, 0, b"")
denied("finit_module", 313, 0, b"", 0)
denied("keyctl", 250, 0, 0, 0, 0, 0)
denied("add_key", 248, b"user", b"x", b"y", 1, -3)
denied("bpf", 321, 0, 0, 0)
denied("perf_event_open", 298, 0, 0, -1, -1, 0)
denied("io_uring_setup", 425, 8, ctypes.create_string_buffer(120))
denied("open_by_handle_at", 304, 0, ctypes.create_string_buffer(64), 0)
denied("userfaultfd", 323, 0)
denied("kexec_load", 246, 0, 0, 0, 0)
denied("reboot", 169, 0xfee1dead, 672274793, 0x4321fedc, 0)
denied("swapon", 167, b"/tmp/x", 0)
denied("settimeofday", 164, ctypes.create_string_buffer(16), 0)
denied("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
denied("chroot", 161, b"/tmp")
denied("pivot_root", 155, b"/tmp", b"/tmp")
TIOCSTI = 0x5412
r = libc.ioctl(0, TIOCSTI, ctypes.c_char_p(b"x"))
out("tiocsti", r == -1, f"errno={errno.errorcode.get(ctypes.get_errno(), '')}")
# M4: line disciplines on the sandbox's own pty (n_hdlc is 13)
import pty, struct
m_fd, s_fd = pty.openpty()
r = libc.ioctl(s_fd, 0x5423, ctypes.byref(ctypes.c_int(13)))
out("tiocsetd_line_discipline", r == -1, f"errno={errno.errorcode.get(ctypes.get_errno(), '')}")
# M4: socketpair of other families (TIPC works as a pair), exotic inet protocols
pair = (ctypes.c_int * 2)()
r = libc.socketpair(30, socket.SOCK_SEQPACKET, 0, pair)
out("socketpair_tipc", r == -1, f"errno={errno.errorcode.get(ctypes.get_errno(), '')}")
for name, args in [("socket_sctp", (socket.AF_INET, socket.SOCK_STREAM, 132)),
                   ("socket_seqpacket_inet", (socket.AF_INET, socket.SOCK_SEQPACKET, 0)),
                   ("socket_dccp", (socket.AF_INET6, 6, 33)),
                   ("socket_mptcp", (socket.AF_INET, socket.SOCK_STREAM, 262))]:
    try:
        socket.socket(*args).close()
        out(name, False, "opened")
    except OSError as e:
        out(name, e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT, errno.EPERM), errno.errorcode.get(e.errno, ""))
a, b = socket.socketpair()
out("socketpair_unix_works", True, "")
out("sync_is_a_no_op", libc.syscall(162) == 0, "")

# --- /proc and /sys
pids = [p for p in os.listdir("/proc") if p.isdigit()]
out("proc_only_own_pids", len(pids) < 10 and HOST_PID not in map(int, pids), f"{len(pids)} pids")
kall = open("/proc/kallsyms").read() if os.path.exists("/proc/kallsyms") else ""
out("kallsyms_masked", kall == "", f"{len(kall)} bytes")
kcore = os.path.exists("/proc/kcore") and os.stat("/proc/kcore").st_size > 0
out("kcore_masked", not kcore, "")
out("sys_absent", not os.path.exists("/sys/kernel"), "")
keys = open("/proc/keys").read() if os.path.exists("/proc/keys") else ""
out("proc_keys_masked", keys == "", "")
caps = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
out("no_capabilities", int(caps, 16) == 0, caps)
nnp = [l for l in open("/proc/self/status") if l.startswith("NoNewPrivs")][0].split()[1]
out("no_new_privs", nnp == "1", nnp)

# --- symlink and hardlink tricks
try:
    os.symlink("/proc/1/root/../../../etc", "/workspace/up")
    inside = os.listdir("/workspace/up")
    out("symlink_proc_root", "shadow" not in inside and "passwd" in inside, str(sorted(inside))[:60])
except OSError as e:
    out("symlink_proc_root", True, errno.errorcode.get(e.errno, ""))
try:
    os.link("/usr/bin/su", "/workspace/su")
    out("hardlink_setuid", False, "linked")
except OSError as e:
    out("hardlink_setuid", True, errno.errorcode.get(e.errno, ""))
try:
    os.mknod("/workspace/sda", 0o600 | 0o60000, os.makedev(8, 0))
    out("mknod_block_device", False, "created")
except OSError as e:
    out("mknod_block_device", True, errno.errorcode.get(e.errno, ""))

# --- setuid binaries gain nothing
su = "/usr/bin/su"
if os.path.exists(su) and os.stat(su).st_mode & 0o4000:
    rc = os.system(f"{su} -c true root </dev/null >/dev/null 2>&1")
    out("setuid_su", rc != 0, f"rc={rc}")
else:
    out("setuid_su", True, "no setuid su on host")
rc = os.system("mount -t tmpfs none /tmp/m >/dev/null 2>&1")
out("setuid_mount", rc != 0, f"rc={rc}")
print("DONE", flush=True)
