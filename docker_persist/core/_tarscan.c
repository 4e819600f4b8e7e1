/* The per-entry hot loops of core/archive.py's TarDigester, in C: scan() reads the plain entries
 * that lie whole in a chunk, as GNU tar and the engine write them for small files, and keeps their
 * records; serialize() writes the digest records and file index lines of simple final records
 * (see its comment below), as _digest_record and _index_line do.
 *
 * scan() takes what the pure-Python reader (TarDigester._whole_entries) would take, and nothing else: an entry it does not read exactly as that code would is left where it
 * starts, and the caller reads it in Python, checks and messages included. So it never raises
 * for the archive's content and never decides anything the Python reader does not; a differential
 * unit test (tests/unit/test_archive_scan.py) feeds both the same archives. What it reads:
 *
 * - an optional PAX header ('x') whose records are only mtime, atime, ctime, uname or gname;
 * - then a ustar header of a regular file ('0'), a directory ('5') or a symlink ('2'); octal numbers
 *   only, an unsigned checksum, no data for a directory or a symlink, a name of relative components
 *   without "..", under the caller's prefix, and (with safety checks) not under a symlink seen before;
 * - the file's data and padding, hashed with SHA-256 (OpenSSL, as hashlib).
 *
 * Build: build/accel.sh (tests/run and build/build.sh call it). Without it, the Python reader does
 * the same work more slowly.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define OPENSSL_API_COMPAT 10101 /* SHA256_Init: OpenSSL 3's EVP (and SHA256(), built on it) fetches the digest on every call, ~1 us */
#include <openssl/sha.h>
#include <string.h>

#define BLOCK 512
#define MAX_PAX 65536     /* a bigger PAX header is the Python reader's */
#define MAX_COMPONENTS 64 /* a deeper name is the Python reader's */

/* The record's field positions (archive.py: _PATH, _SEQ, ... _MTIME). */
enum { R_PATH, R_SEQ, R_KIND, R_MODE, R_UID, R_GID, R_SIZE, R_SHA, R_TARGET, R_DEVICE, R_XATTRS, R_MTIME, R_FIELDS };

/* A numeric header field as archive.py's fast branch reads it: padding of spaces and NULs at either
 * end, then octal digits only. Return 1 and the value, 0 if the field is empty, -1 otherwise. */
static int octal(const unsigned char *field, int size, long long *value) {
    int start = 0, end = size;
    while (start < end && (field[start] == ' ' || field[start] == '\0')) start++;
    while (end > start && (field[end - 1] == ' ' || field[end - 1] == '\0')) end--;
    if (start == end) return 0;
    long long result = 0;
    for (int i = start; i < end; i++) {
        if (field[i] < '0' || field[i] > '7') return -1;
        result = result * 8 + (field[i] - '0');
    }
    *value = result;
    return 1;
}

/* Parse a header's mode, uid, gid, size and mtime and check its checksum (the unsigned sum);
 * return 0 for anything the Python reader would parse another way or refuse. An empty mtime is 0. */
static int header_numbers(const unsigned char *block, long long *mode, long long *uid, long long *gid,
                          long long *size, long long *mtime) {
    long long checksum = 0;
    if (octal(block + 100, 8, mode) != 1 || octal(block + 108, 8, uid) != 1 || octal(block + 116, 8, gid) != 1 ||
        octal(block + 124, 12, size) != 1 || octal(block + 148, 8, &checksum) != 1)
        return 0;
    int found = octal(block + 136, 12, mtime);
    if (found < 0) return 0;
    if (!found) *mtime = 0;
    unsigned int sum = 8 * ' '; /* the checksum field counts as spaces */
    for (int i = 0; i < BLOCK; i++) sum += block[i];
    for (int i = 148; i < 156; i++) sum -= block[i];
    return sum == checksum;
}

/* Read a PAX header's content as archive.py's _parse_pax does, keeping only the last mtime value;
 * return 0 if it is malformed or holds a key other than mtime, atime, ctime, uname or gname. */
static int pax_records(const unsigned char *content, Py_ssize_t size, const unsigned char **mtime,
                       Py_ssize_t *mtime_size) {
    Py_ssize_t pos = 0;
    *mtime = NULL;
    *mtime_size = 0;
    while (pos < size) {
        Py_ssize_t limit = pos + 20 < size ? pos + 20 : size, space = -1;
        for (Py_ssize_t i = pos; i < limit; i++)
            if (content[i] == ' ') {
                space = i;
                break;
            }
        if (space <= pos || space - pos > 9) return 0;
        Py_ssize_t length = 0;
        for (Py_ssize_t i = pos; i < space; i++) {
            if (content[i] < '0' || content[i] > '9') return 0;
            length = length * 10 + (content[i] - '0');
        }
        Py_ssize_t end = pos + length;
        if (end > size || end <= space + 1 || content[end - 1] != '\n') return 0;
        const unsigned char *key = content + space + 1;
        const unsigned char *equals = memchr(key, '=', (size_t)(end - 1 - (space + 1)));
        if (equals == NULL || equals == key) return 0;
        Py_ssize_t key_size = equals - key;
        const unsigned char *value = equals + 1;
        Py_ssize_t value_size = content + end - 1 - value;
        if (key_size == 5 && memcmp(key, "mtime", 5) == 0) {
            *mtime = value;
            *mtime_size = value_size;
        } else if (!(key_size == 5 && (memcmp(key, "atime", 5) == 0 || memcmp(key, "ctime", 5) == 0 ||
                                       memcmp(key, "uname", 5) == 0 || memcmp(key, "gname", 5) == 0)))
            return 0;
        pos = end;
    }
    return 1;
}

/* A PAX mtime as Python's float() reads it, for values of the form -?digits(.digits)? only. */
static int pax_mtime(const unsigned char *value, Py_ssize_t size, double *mtime) {
    char text[64];
    Py_ssize_t i = 0, digits = 0;
    if (size == 0 || size >= (Py_ssize_t)sizeof text) return 0;
    if (value[0] == '-') i++;
    for (; i < size && value[i] >= '0' && value[i] <= '9'; i++) digits++;
    if (!digits) return 0;
    if (i < size) {
        if (value[i] != '.') return 0;
        Py_ssize_t fraction = 0;
        for (i++; i < size && value[i] >= '0' && value[i] <= '9'; i++) fraction++;
        if (!fraction || i != size) return 0;
    }
    memcpy(text, value, (size_t)size);
    text[size] = '\0';
    *mtime = PyOS_string_to_double(text, NULL, NULL);
    if (*mtime == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return isfinite(*mtime);
}

/* The entry name as archive.py's _header_name builds it: the name field, after the prefix field
 * and a slash in a POSIX ustar header. */
static Py_ssize_t header_name(const unsigned char *block, unsigned char *name) {
    size_t name_size = strnlen((const char *)block, 100);
    Py_ssize_t size = 0;
    if (memcmp(block + 257, "ustar\0", 6) == 0) {
        size_t prefix_size = strnlen((const char *)block + 345, 155);
        if (prefix_size) {
            memcpy(name, block + 345, prefix_size);
            name[prefix_size] = '/';
            size = (Py_ssize_t)prefix_size + 1;
        }
    }
    memcpy(name + size, block, name_size);
    return size + (Py_ssize_t)name_size;
}

/* Normalize a name as TarDigester._entry_path does (empty and "." components dropped, the prefix's
 * components removed) into `path`; return its size, or -1 for what the Python reader decides:
 * an absolute name, a ".." component, a name outside the prefix, the root itself, a deep name. */
static Py_ssize_t normalize(const unsigned char *name, Py_ssize_t size, const unsigned char *prefix,
                            Py_ssize_t prefix_size, unsigned char *path) {
    if (size == 0 || name[0] == '/') return -1;
    Py_ssize_t starts[MAX_COMPONENTS], ends[MAX_COMPONENTS];
    int count = 0;
    for (Py_ssize_t pos = 0; pos < size;) {
        const unsigned char *slash = memchr(name + pos, '/', (size_t)(size - pos));
        Py_ssize_t end = slash ? slash - name : size;
        Py_ssize_t length = end - pos;
        if (length == 2 && name[pos] == '.' && name[pos + 1] == '.') return -1;
        if (length && !(length == 1 && name[pos] == '.')) {
            if (count == MAX_COMPONENTS) return -1;
            starts[count] = pos;
            ends[count++] = end;
        }
        pos = end + 1;
    }
    int first = 0;
    for (Py_ssize_t pos = 0; pos < prefix_size;) { /* the prefix: components joined by '/', normalized */
        const unsigned char *slash = memchr(prefix + pos, '/', (size_t)(prefix_size - pos));
        Py_ssize_t end = slash ? slash - prefix : prefix_size;
        if (first == count || ends[first] - starts[first] != end - pos ||
            memcmp(name + starts[first], prefix + pos, (size_t)(end - pos)) != 0)
            return -1;
        first++;
        pos = end + 1;
    }
    if (first == count) return -1;
    Py_ssize_t out = 0;
    for (int i = first; i < count; i++) {
        if (out) path[out++] = '/';
        memcpy(path + out, name + starts[i], (size_t)(ends[i] - starts[i]));
        out += ends[i] - starts[i];
    }
    return out;
}

/* scan(view, pos, end, seq, records, limit, symlinks, hash_data, check_safety, prefix, kinds) -> (pos, seq)
 *
 * Read the entries lying whole in view[pos:end], appending each one's record to `records` (a list)
 * until it holds `limit`; symlink paths go into the set `symlinks`. `kinds` is the tuple of the
 * str objects "file", "dir", "symlink" and "", and the empty tuple, shared by every record.
 * Return where the first entry left to the Python reader starts, and the next record number. */
static PyObject *scan(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer buffer;
    Py_ssize_t pos, end, limit;
    long long seq;
    PyObject *records, *symlinks, *kinds;
    int hash_data, check_safety;
    const char *prefix;
    Py_ssize_t prefix_size;
    if (!PyArg_ParseTuple(args, "y*nnLO!nO!ppy#O!", &buffer, &pos, &end, &seq, &PyList_Type, &records, &limit,
                          &PySet_Type, &symlinks, &hash_data, &check_safety, &prefix, &prefix_size, &PyTuple_Type,
                          &kinds))
        return NULL;
    if (PyTuple_GET_SIZE(kinds) != 5 || pos < 0 || end > buffer.len || pos > end) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "scan: bad arguments");
        return NULL;
    }
    PyObject *file_kind = PyTuple_GET_ITEM(kinds, 0), *dir_kind = PyTuple_GET_ITEM(kinds, 1),
             *symlink_kind = PyTuple_GET_ITEM(kinds, 2), *empty = PyTuple_GET_ITEM(kinds, 3),
             *no_xattrs = PyTuple_GET_ITEM(kinds, 4);
    const unsigned char *data = buffer.buf;
    unsigned char name[BLOCK], path[BLOCK], digest[SHA256_DIGEST_LENGTH];
    char hex[64];
    static const char HEX[] = "0123456789abcdef";
    int failed = 0;

    while (end - pos >= BLOCK && PyList_GET_SIZE(records) < limit) {
        const unsigned char *block = data + pos;
        Py_ssize_t at = pos;
        long long mode, uid, gid, size, mtime_field;
        const unsigned char *pax_mtime_value = NULL;
        Py_ssize_t pax_mtime_size = 0;
        if (block[156] == 'x') {
            if (!header_numbers(block, &mode, &uid, &gid, &size, &mtime_field) || size > MAX_PAX) break;
            at = pos + BLOCK + size + (-size & (BLOCK - 1));
            if (end - at < BLOCK || !pax_records(block + BLOCK, size, &pax_mtime_value, &pax_mtime_size)) break;
            block = data + at;
        }
        char typeflag = (char)block[156];
        if (typeflag != '0' && typeflag != '5' && typeflag != '2') break;
        if (!header_numbers(block, &mode, &uid, &gid, &size, &mtime_field)) break;
        if (typeflag != '0' && size) break;
        Py_ssize_t stored = size + (-size & (BLOCK - 1));
        if (end - (at + BLOCK) < stored) break;
        double mtime = (double)mtime_field;
        if (pax_mtime_size && !pax_mtime(pax_mtime_value, pax_mtime_size, &mtime)) break;
        Py_ssize_t name_size = header_name(block, name);
        Py_ssize_t path_size = normalize(name, name_size, (const unsigned char *)prefix, prefix_size, path);
        if (path_size < 0 || name_size - (name_size >= 2 && name[0] == '.' && name[1] == '/' ? 2 : 0) > 255) break;

        if (check_safety && PySet_GET_SIZE(symlinks)) { /* through a symlink: the Python reader refuses it */
            int through = 0;
            for (Py_ssize_t i = 1; i < path_size && !through; i++) {
                if (path[i] != '/') continue;
                PyObject *parent = PyUnicode_DecodeUTF8((const char *)path, i, "surrogateescape");
                through = parent == NULL ? -1 : PySet_Contains(symlinks, parent);
                Py_XDECREF(parent);
            }
            if (through < 0) {
                failed = 1;
                break;
            }
            if (through) break;
        }
        PyObject *kind = typeflag == '0' ? file_kind : typeflag == '5' ? dir_kind : symlink_kind;
        PyObject *sha = empty, *target = empty;
        Py_INCREF(sha);
        Py_INCREF(target);
        if (typeflag == '0' && hash_data) {
            SHA256_CTX context;
            SHA256_Init(&context);
            SHA256_Update(&context, block + BLOCK, (size_t)size);
            SHA256_Final(digest, &context);
            for (int i = 0; i < 32; i++) {
                hex[2 * i] = HEX[digest[i] >> 4];
                hex[2 * i + 1] = HEX[digest[i] & 15];
            }
            Py_DECREF(sha);
            sha = PyUnicode_FromStringAndSize(hex, 64);
        } else if (typeflag == '2') {
            Py_DECREF(target);
            target = PyUnicode_DecodeUTF8((const char *)block + 157, (Py_ssize_t)strnlen((const char *)block + 157, 100),
                                          "surrogateescape");
            mode = 0;
        }
        PyObject *record = PyTuple_New(R_FIELDS);
        PyObject *path_object = PyBytes_FromStringAndSize((const char *)path, path_size);
        if (sha == NULL || target == NULL || record == NULL || path_object == NULL) {
            Py_XDECREF(sha);
            Py_XDECREF(target);
            Py_XDECREF(record);
            Py_XDECREF(path_object);
            failed = 1;
            break;
        }
        Py_INCREF(kind);
        Py_INCREF(empty);
        Py_INCREF(no_xattrs);
        PyTuple_SET_ITEM(record, R_PATH, path_object);
        PyTuple_SET_ITEM(record, R_SEQ, PyLong_FromLongLong(seq));
        PyTuple_SET_ITEM(record, R_KIND, kind);
        PyTuple_SET_ITEM(record, R_MODE, PyLong_FromLongLong(mode & 07777));
        PyTuple_SET_ITEM(record, R_UID, PyLong_FromLongLong(uid));
        PyTuple_SET_ITEM(record, R_GID, PyLong_FromLongLong(gid));
        PyTuple_SET_ITEM(record, R_SIZE, PyLong_FromLongLong(size));
        PyTuple_SET_ITEM(record, R_SHA, sha);
        PyTuple_SET_ITEM(record, R_TARGET, target);
        PyTuple_SET_ITEM(record, R_DEVICE, empty);
        PyTuple_SET_ITEM(record, R_XATTRS, no_xattrs);
        PyTuple_SET_ITEM(record, R_MTIME, PyFloat_FromDouble(mtime));
        for (int i = 0; i < R_FIELDS; i++)
            if (PyTuple_GET_ITEM(record, i) == NULL) failed = 1;
        if (!failed && typeflag == '2') {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)path, path_size, "surrogateescape");
            failed = text == NULL || PySet_Add(symlinks, text) < 0;
            Py_XDECREF(text);
        }
        if (failed || PyList_Append(records, record) < 0) {
            Py_DECREF(record);
            failed = 1;
            break;
        }
        Py_DECREF(record);
        seq++;
        pos = at + BLOCK + stored;
    }
    PyBuffer_Release(&buffer);
    if (failed) return NULL;
    return Py_BuildValue("nL", pos, seq);
}

/* A growing byte buffer. */
typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Out;

static int out_reserve(Out *out, Py_ssize_t more) {
    if (out->size + more <= out->capacity) return 1;
    Py_ssize_t capacity = out->capacity ? out->capacity : 65536;
    while (capacity < out->size + more) capacity *= 2;
    char *data = PyMem_Realloc(out->data, (size_t)capacity);
    if (data == NULL) return 0;
    out->data = data;
    out->capacity = capacity;
    return 1;
}

static void out_add(Out *out, const char *data, Py_ssize_t size) { /* room reserved */
    memcpy(out->data + out->size, data, (size_t)size);
    out->size += size;
}

/* Write a number >= 0 in decimal to `text`; return its length (at most 20). sprintf costs ~100 ns a call. */
static Py_ssize_t decimal(long long value, char *text) {
    char digits[24];
    int count = 0;
    unsigned long long left = (unsigned long long)value;
    do {
        digits[count++] = (char)('0' + left % 10);
        left /= 10;
    } while (left);
    for (int i = 0; i < count; i++) text[i] = digits[count - 1 - i];
    return count;
}

/* Append the netstring field "<key as a netstring><len(value)>:<value>," (room reserved); `key` is the
 * key's netstring, e.g. "3:gid,". */
static void out_field(Out *out, const char *key, const char *value, Py_ssize_t size) {
    out_add(out, key, (Py_ssize_t)strlen(key));
    out->size += decimal(size, out->data + out->size);
    out->data[out->size++] = ':';
    out_add(out, value, size);
    out->data[out->size++] = ',';
}

static int needs_escape(const char *text, Py_ssize_t size) { /* what fileindex.escape escapes */
    for (Py_ssize_t i = 0; i < size; i++)
        if (text[i] == '\\' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r') return 1;
    return 0;
}

/* serialize(nodes, index) -> (records, lines, files, dirs, symlinks, bytes) | None
 *
 * The content digest's records (archive.py: _digest_record) and, with `index`, the file index's lines
 * (_index_line) of a batch of final records, concatenated, with the counts of files, directories and
 * symlinks and the files' bytes. Only for records the Python code would serialize without a link
 * group: a file, a directory or a symlink, no xattrs, not the root, nothing to escape in the index;
 * for a batch holding anything else it returns None and the caller serializes the batch in Python. */
static PyObject *serialize(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *nodes;
    int index;
    if (!PyArg_ParseTuple(args, "O!p", &PyList_Type, &nodes, &index)) return NULL;
    Out records = {0}, lines = {0};
    long long files = 0, dirs = 0, symlinks = 0, total = 0;
    PyObject *result = NULL, *encoded = NULL;
    int simple = 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(nodes) && simple; i++) {
        PyObject *node = PyList_GET_ITEM(nodes, i);
        Py_CLEAR(encoded);
        simple = 0;
        if (!PyTuple_Check(node) || PyTuple_GET_SIZE(node) != R_FIELDS) break;
        PyObject *path_object = PyTuple_GET_ITEM(node, R_PATH), *kind_object = PyTuple_GET_ITEM(node, R_KIND),
                 *xattrs = PyTuple_GET_ITEM(node, R_XATTRS), *device = PyTuple_GET_ITEM(node, R_DEVICE),
                 *mtime_object = PyTuple_GET_ITEM(node, R_MTIME);
        if (!PyBytes_Check(path_object) || !PyUnicode_Check(kind_object) || !PyTuple_Check(xattrs) ||
            PyTuple_GET_SIZE(xattrs) || !PyUnicode_Check(device) || PyUnicode_GET_LENGTH(device) ||
            !PyFloat_Check(mtime_object))
            break;
        const char *path = PyBytes_AS_STRING(path_object);
        Py_ssize_t path_size = PyBytes_GET_SIZE(path_object);
        if ((path_size == 1 && path[0] == '.') || needs_escape(path, path_size)) break;
        const char *kind = PyUnicode_AsUTF8(kind_object);
        if (kind == NULL) goto error;
        int is_file = strcmp(kind, "file") == 0, is_dir = strcmp(kind, "dir") == 0,
            is_symlink = strcmp(kind, "symlink") == 0;
        if (!is_file && !is_dir && !is_symlink) break;
        int overflow = 0;
        long long mode = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(node, R_MODE), &overflow);
        long long uid = overflow ? 0 : PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(node, R_UID), &overflow);
        long long gid = overflow ? 0 : PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(node, R_GID), &overflow);
        long long size = overflow ? 0 : PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(node, R_SIZE), &overflow);
        if (PyErr_Occurred()) goto error;
        double mtime = floor(PyFloat_AS_DOUBLE(mtime_object));
        if (overflow || mode < 0 || mode > 07777 || uid < 0 || gid < 0 || size < 0 || !(mtime > -9.2e18) ||
            !(mtime < 9.2e18))
            break;
        const char *what = "";
        Py_ssize_t what_size = 0;
        if (is_file || is_symlink) {
            PyObject *text = PyTuple_GET_ITEM(node, is_file ? R_SHA : R_TARGET);
            if (!PyUnicode_Check(text)) break;
            encoded = PyUnicode_AsEncodedString(text, "utf-8", "surrogateescape");
            if (encoded == NULL) goto error;
            what = PyBytes_AS_STRING(encoded);
            what_size = PyBytes_GET_SIZE(encoded);
            if (needs_escape(what, what_size)) break;
        }
        /* The record: ns(gid, mode, path, [sha256, size | target], type, uid), in a netstring of its own. */
        char gid_text[24], mode_text[8], uid_text[24], size_text[24], mtime_text[24];
        Py_ssize_t gid_size = decimal(gid, gid_text), uid_size = decimal(uid, uid_text),
                   size_size = decimal(size, size_text), mode_size = 4;
        for (int i = 0; i < 4; i++) mode_text[i] = (char)('0' + ((mode >> (3 * (3 - i))) & 7)); /* %04o */
        if (!out_reserve(&records, 2 * path_size + 2 * what_size + 256)) goto nomemory;
        Py_ssize_t start = records.size;
        out_field(&records, "3:gid,", gid_text, gid_size);
        out_field(&records, "4:mode,", mode_text, mode_size);
        out_field(&records, "4:path,", path, path_size);
        if (is_file) {
            /* as archive.py writes it: "64:" whatever the hash's length ("" without hash_data) */
            out_add(&records, "6:sha256,64:", 12);
            out_add(&records, what, what_size);
            records.data[records.size++] = ',';
            out_field(&records, "4:size,", size_text, size_size);
        } else if (is_symlink)
            out_field(&records, "6:target,", what, what_size);
        out_field(&records, "4:type,", kind, (Py_ssize_t)strlen(kind));
        out_field(&records, "3:uid,", uid_text, uid_size);
        Py_ssize_t body = records.size - start;
        char prefix[24];
        Py_ssize_t prefix_size = decimal(body, prefix);
        prefix[prefix_size++] = ':';
        memmove(records.data + start + prefix_size, records.data + start, (size_t)body);
        memcpy(records.data + start, prefix, (size_t)prefix_size);
        records.size += prefix_size;
        records.data[records.size++] = ',';
        if (index) { /* path, kind, mode, uid, gid, size, mtime, sha256 or target, link group ("") */
            if (!out_reserve(&lines, path_size + what_size + 160)) goto nomemory;
            out_add(&lines, path, path_size);
            const char *fields[] = {kind, mode_text, uid_text, gid_text, size_text, mtime_text};
            Py_ssize_t sizes[] = {(Py_ssize_t)strlen(kind), mode_size, uid_size, gid_size, size_size, 0};
            if (mtime < 0) { /* math.floor of a negative time */
                mtime_text[0] = '-';
                sizes[5] = 1 + decimal(-(long long)mtime, mtime_text + 1);
            } else
                sizes[5] = decimal((long long)mtime, mtime_text);
            for (int i = 0; i < 6; i++) {
                lines.data[lines.size++] = '\t';
                out_add(&lines, fields[i], sizes[i]);
            }
            lines.data[lines.size++] = '\t';
            out_add(&lines, what, what_size);
            out_add(&lines, "\t\n", 2);
        }
        files += is_file;
        dirs += is_dir;
        symlinks += is_symlink;
        total += size; /* 0 but for files */
        simple = 1;
    }
    if (!simple) {
        result = Py_None;
        Py_INCREF(result);
    } else
        result = Py_BuildValue("y#y#LLLL", records.data ? records.data : "", records.size, lines.data ? lines.data : "",
                               lines.size, files, dirs, symlinks, total);
    goto done;
nomemory:
    PyErr_NoMemory();
error:
    result = NULL;
done:
    Py_XDECREF(encoded);
    PyMem_Free(records.data);
    PyMem_Free(lines.data);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Read the plain entries lying whole in a chunk (see the module's source)."},
    {"serialize", serialize, METH_VARARGS, "The digest records and index lines of simple final records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_tarscan", .m_doc = NULL, .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__tarscan(void) { return PyModule_Create(&module); }
