"""Build a small OCI image layout around the host's static busybox, for the
template tests: two layers (gzip, then plain tar) whose second whites out a
file and makes a directory opaque, and a config with Env and WorkingDir.
Usage: make_image.py OUTDIR [TAG] [--extra DIR] [--extra-plain DIR]
(--extra adds DIR's tree as a third layer under /extra, gzipped;
--extra-plain the same as a plain tar: for benchmarks)"""
import gzip, hashlib, io, json, os, sys, tarfile

args = sys.argv[1:]
extra, extra_plain = None, False
for flag in ("--extra", "--extra-plain"):
    if flag in args:
        i = args.index(flag)
        extra, extra_plain = args[i + 1], flag == "--extra-plain"
        del args[i:i + 2]
out, tag = args[0], (args[1] if len(args) > 1 else "1")
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)


def put(data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, h), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}


def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), (0o755 if kind == "exe" else 0o644)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


busybox = open("/bin/busybox", "rb").read()
tools = ["sh", "cat", "ls", "id", "env", "pwd", "echo", "test", "sleep", "wc", "true"]
base = [("bin", "dir", None), ("bin/busybox", "exe", busybox)]
base += [("bin/" + t, "link", "busybox") for t in tools]
base += [
    ("etc", "dir", None),
    ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"),
    ("etc/group", "file", b"root:x:0:\nuser:x:1000:\n"),
    ("etc/gone-later", "file", b"lower\n"),
    ("opq", "dir", None),
    ("opq/old", "file", b"old\n"),
]
top = [
    ("etc", "dir", None),
    ("etc/.wh.gone-later", "file", b""),
    ("etc/motd", "file", b"hello from layer 2\n"),
    ("opq", "dir", None),
    ("opq/.wh..wh..opq", "file", b""),
    ("opq/new", "file", b"new\n"),
]
t1, l2 = layer(base), layer(top)
l1 = gzip.compress(t1, mtime=0)
diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in (t1, l2)]
layers = [dict(put(l1), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"),
          dict(put(l2), mediaType="application/vnd.oci.image.layer.v1.tar")]
if extra:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.add(extra, arcname="extra")
    data = buf.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
    if extra_plain:
        layers.append(dict(put(data), mediaType="application/vnd.oci.image.layer.v1.tar"))
    else:
        layers.append(dict(put(gzip.compress(data, compresslevel=6, mtime=0)),
                           mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
config = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/bin", "IMG_VAR=from-image"], "WorkingDir": "/data", "Cmd": ["sh"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
cfg = dict(put(json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg, "layers": layers}
m = dict(put(json.dumps(manifest).encode()), mediaType="application/vnd.oci.image.manifest.v1+json")
m["annotations"] = {"org.opencontainers.image.ref.name": tag}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [m]}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
