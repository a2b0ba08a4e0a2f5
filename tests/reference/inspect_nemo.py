#!/usr/bin/env python3
"""Dump the container-level facts of the .nemo files NeMo wrote (tar headers, zip records,
pickle opcodes, storages). Used by make_fixtures.py (results go to manifest.json under
"nemo_archive") and by hand: inspect_nemo.py path/to/model.nemo
"""
import io
import json
import pickletools
import struct
import sys
import tarfile
import zipfile
from pathlib import Path


def tar_headers(raw: bytes):
    """Walk the raw 512-byte headers (not tarfile's merged view) so PAX records are visible."""
    out = []
    off = 0
    zero_blocks = 0
    while off + 512 <= len(raw):
        h = raw[off:off + 512]
        if h == b"\0" * 512:
            zero_blocks += 1
            off += 512
            continue
        name = h[0:100].rstrip(b"\0").decode()
        size_field = h[124:136]
        if size_field[0] & 0x80:
            size = int.from_bytes(size_field[1:], "big")
        else:
            size = int(size_field.rstrip(b"\0 ").decode() or "0", 8)
        typeflag = h[156:157].decode() if h[156] else "\\0"
        magic = h[257:263]
        version = h[263:265]
        prefix = h[345:500].rstrip(b"\0").decode()
        rec = {"offset": off, "typeflag": typeflag, "name": name, "size": size,
               "magic": magic.decode(errors="replace"), "version": version.decode(errors="replace"),
               "mode": h[100:108].rstrip(b"\0 ").decode(), "mtime_field": h[136:148].rstrip(b"\0 ").decode(),
               "uname": h[265:297].rstrip(b"\0").decode(), "prefix": prefix}
        data = raw[off + 512: off + 512 + size]
        if typeflag in ("x", "g"):
            recs = []
            p = 0
            while p < len(data):
                sp = data.index(b" ", p)
                ln = int(data[p:sp])
                kv = data[sp + 1:p + ln - 1].decode()
                k, v = kv.split("=", 1)
                recs.append([k, v])
                p += ln
            rec["pax"] = recs
        out.append(rec)
        off += 512 + ((size + 511) // 512) * 512
    return {"headers": out, "trailing_zero_blocks": zero_blocks, "total_bytes": len(raw),
            "record_multiple_of_10240": len(raw) % 10240 == 0}


def zip_records(ckpt: bytes):
    z = zipfile.ZipFile(io.BytesIO(ckpt))
    recs = []
    for zi in z.infolist():
        lh = ckpt[zi.header_offset:zi.header_offset + 30]
        sig, ver, flag, method, mt, md, crc, csize, usize, nlen, xlen = struct.unpack("<IHHHHHIIIHH", lh)
        extra = ckpt[zi.header_offset + 30 + nlen: zi.header_offset + 30 + nlen + xlen]
        data_off = zi.header_offset + 30 + nlen + xlen
        ids = []
        p = 0
        while p + 4 <= len(extra):
            hid, hl = struct.unpack("<HH", extra[p:p + 4])
            ids.append([hex(hid), hl])
            p += 4 + hl
        recs.append({"name": zi.filename, "method": method, "flag": flag, "version_needed": ver,
                     "local_crc": crc, "local_compress_size": csize, "local_file_size": usize,
                     "compress_size": zi.compress_size, "file_size": zi.file_size, "data_offset": data_off,
                     "data_offset_mod_64": data_off % 64, "local_extra_len": xlen, "local_extra_fields": ids,
                     "date_time": list(zi.date_time), "zip64_local": any(i[0] == "0x1" for i in ids)})
    return recs


def pickle_facts(pkl: bytes):
    ops = {}
    first = []
    proto = None
    globals_ = set()
    persid_tuples = 0
    for i, (op, arg, pos) in enumerate(pickletools.genops(pkl)):
        ops[op.name] = ops.get(op.name, 0) + 1
        if op.name == "PROTO":
            proto = arg
        if op.name == "GLOBAL":
            globals_.add(arg)
        if op.name == "BINPERSID":
            persid_tuples += 1
        if i < 40:
            first.append([pos, op.name, repr(arg) if arg is not None else None])
    return {"protocol": proto, "opcode_counts": dict(sorted(ops.items())), "globals": sorted(globals_),
            "binpersid_count": persid_tuples, "first_ops": first, "bytes": len(pkl)}


def storage_facts(ckpt_path_bytes: bytes):
    import torch
    sd = torch.load(io.BytesIO(ckpt_path_bytes), map_location="cpu", weights_only=False)
    by_ptr = {}
    dtypes = {}
    for k, v in sd.items():
        dtypes[str(v.dtype)] = dtypes.get(str(v.dtype), 0) + 1
        by_ptr.setdefault(v.untyped_storage().data_ptr(), []).append(k)
    shared = [ks for ks in by_ptr.values() if len(ks) > 1]
    zero_d = [k for k, v in sd.items() if v.dim() == 0]
    noncontig = [k for k, v in sd.items() if not v.is_contiguous() or v.storage_offset() != 0]
    return {"n_entries": len(sd), "n_storages": len(by_ptr), "dtype_counts": dtypes, "shared_storage_keys": shared,
            "zero_dim_tensors": zero_d[:8], "n_zero_dim": len(zero_d), "noncontiguous_or_offset": noncontig,
            "metadata_attr": hasattr(sd, "_metadata"), "type": type(sd).__module__ + "." + type(sd).__name__}


def persid_storage_keys(pkl: bytes):
    """Map state-dict key -> (storage key, storage type, location, numel) from the pickle itself."""
    class U(__import__("pickle").Unpickler):
        def persistent_load(self, pid):
            return tuple(pid)  # ('storage', storage_type, key, location, numel)

        def find_class(self, mod, name):
            if mod == "torch" and name.endswith("Storage"):
                return f"{mod}.{name}"
            if mod == "torch._utils" and name == "_rebuild_tensor_v2":
                return lambda st, off, size, stride, *rest: {"storage": st, "offset": off, "size": list(size),
                                                              "stride": list(stride), "n_args": 4 + len(rest)}
            if mod == "collections" and name == "OrderedDict":
                import collections
                return collections.OrderedDict
            return lambda *a, **k: f"{mod}.{name}"

    sd = U(io.BytesIO(pkl)).load()
    return sd


def inspect_nemo(path):
    raw = Path(path).read_bytes()
    facts = {"nemo_bytes": len(raw), "tar": tar_headers(raw)}
    with tarfile.open(path, "r:") as t:
        ckpt = t.extractfile("./model_weights.ckpt").read()
        cfg = t.extractfile("./model_config.yaml").read().decode()
    facts["model_config_first_lines"] = cfg.splitlines()[:3]
    facts["model_config_tokenizer_paths"] = [ln.strip() for ln in cfg.splitlines() if "nemo:" in ln]
    recs = zip_records(ckpt)
    facts["zip"] = {"records": recs, "all_stored": all(r["method"] == 0 for r in recs),
                    "all_data_64_aligned": all(r["data_offset_mod_64"] == 0 for r in recs),
                    "archive_prefix": recs[0]["name"].split("/")[0]}
    z = zipfile.ZipFile(io.BytesIO(ckpt))
    pkl_name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
    pkl = z.read(pkl_name)
    facts["pickle"] = pickle_facts(pkl)
    sd = persid_storage_keys(pkl)
    stor = {}
    for k, v in sd.items():
        stor.setdefault(v["storage"][2], []).append(k)
    facts["pickle_persid_tuple_example"] = [str(x) for x in next(iter(sd.values()))["storage"]]
    facts["pickle_tied_storage_keys"] = {sk: ks for sk, ks in stor.items() if len(ks) > 1}
    facts["pickle_storage_types"] = sorted({v["storage"][1] for v in sd.values()})
    facts["pickle_locations"] = sorted({v["storage"][3] for v in sd.values()})
    facts["pickle_storage_keys_in_first_use_order"] = list(dict.fromkeys(v["storage"][2] for v in sd.values()))[:12]
    facts["zip_data_record_order"] = [r["name"] for r in recs if "/data/" in r["name"]][:12]
    facts["pickle_rebuild_n_args"] = sorted({v["n_args"] for v in sd.values()})
    facts["storages"] = storage_facts(ckpt)
    for extra in ("version", "byteorder", ".data/version", ".data/serialization_id"):
        n = f"{facts['zip']['archive_prefix']}/{extra}"
        if n in z.namelist():
            facts.setdefault("zip_small_records", {})[extra] = z.read(n).decode(errors="replace")
    return facts


def inspect_all(out: Path, models):
    res = {}
    for m in models:
        p = Path(out) / m / "model.nemo"
        if p.exists():
            f = inspect_nemo(p)
            # keep the manifest readable: summarise the per-record lists
            f["zip"]["records"] = f["zip"]["records"][:6] + [{"...": len(f["zip"]["records"])}]
            res[m] = f
    return res


if __name__ == "__main__":
    print(json.dumps(inspect_nemo(sys.argv[1]), indent=1))
