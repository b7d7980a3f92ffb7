"""Walk a JPEG's entropy-coded data the way libjpeg decodes it, and report what libjpeg only *warns* about.

libjpeg (and so Pillow, OpenCV, nvImageCodec's CPU decoder and DALI's) meets corrupt scan data with a warning, not an
error, and fills what it could not decode with zero coefficients: a file whose scan data was overwritten decodes
without an error, grey from the damage on (a marker hit early: "Corrupt JPEG data: premature end of data segment")
or garbled (codes that decode to the wrong symbols until the data runs out or is left over: "N extraneous bytes
before marker"). Pillow discards libjpeg's warnings; nvImageCodec prints them to stderr and returns the image. So a
decoder's success says nothing about these files (measured in tests/data/test_jpeg_scan.py: of 40 random 400-byte
overwrites of a JPEG's scan data, Pillow's strict decode refuses 26 and nvImageCodec none; every one makes libjpeg
warn, and this walk refuses every one).

:func:`scan_error` decodes every Huffman code of every scan -- baseline, extended and progressive (DC and AC, first
and refinement passes, end-of-band runs, restart intervals) -- without the inverse DCT, and returns the reason of
the first condition on which libjpeg (jdhuff.c, jdphuff.c, jdmarker.c) warns:

* a code the scan's Huffman table does not have (JWRN_HUFF_BAD_CODE);
* a marker, or the end of the file, where a block still needs bits (JWRN_HIT_MARKER / JWRN_JPEG_EOF: the rest of
  the image decodes grey);
* bytes left between a scan's (or a restart interval's) last code and the next marker (JWRN_EXTRANEOUS_DATA);
* a missing or out-of-order restart marker (JWRN_MUST_RESYNC);
* a progressive scan that refines coefficients no earlier scan sent, or an AC scan before its DC scan
  (JWRN_BOGUS_PROGRESSION), and a refinement code of a size other than 1 (JWRN_HUFF_BAD_CODE);
* a run of zeros past the end of the block or band, which libjpeg writes out of place without a word.

It checks only the entropy-coded data; anything it does not model (arithmetic coding, lossless and hierarchical
JPEG, a height given by a DNL marker, more than four components, unknown markers) it leaves to a full decode
(:func:`walk_scans` says whether it walked the file). :func:`pipelines.data.imagefiles.check_image` therefore
decodes a JPEG with Pillow only when the walk could not model it: on 500 random overwrites of JPEGs (baseline,
progressive, restart intervals, 4:4:4, optimised tables; anywhere in the file or in its scan data), every file
Pillow's strict decode refused was refused by the walk, which also refused 306 that Pillow decoded (5 passed both:
overwrites that leave a valid stream). The walk is compiled with Numba (cached on disk) and costs about what
Pillow's decode does (``bench.scale_bench`` measures both), so the check costs half of running both.
"""
from __future__ import annotations

import io

import numba
import numpy as np

# return codes of _walk; position is the byte offset where the condition was met
OK, NOT_MODELLED, BAD_CODE, HIT_MARKER, EXTRANEOUS, BAD_RESTART, BAD_PROGRESSION, RUN_PAST_BLOCK, BAD_TABLE, \
    TRUNCATED = range(10)

# one row of int64 per Huffman table (class * 4 + id): the 8-bit look-ahead, then Annex C's decoding tables
LOOK, MAXCODE, VALPTR, MINCODE, SYMBOLS, TABLE_WIDTH = 0, 256, 273, 290, 307, 563

REASONS = {
    BAD_CODE: "corrupt scan data: a Huffman code the table does not have",
    HIT_MARKER: "corrupt scan data: a marker where the blocks still need data (the decoder greys out the rest)",
    EXTRANEOUS: "corrupt scan data: bytes left over between the last block and the next marker",
    BAD_RESTART: "corrupt scan data: a restart marker missing or out of order",
    BAD_PROGRESSION: "corrupt progressive data: a scan refines coefficients no earlier scan sent",
    RUN_PAST_BLOCK: "corrupt scan data: a run of zeros past the end of a block",
    BAD_TABLE: "corrupt Huffman table",
    TRUNCATED: "truncated: the file ends inside the image data",
}


def compile_walk() -> None:
    """Compile the walk in this process, or load it from Numba's on-disk cache: before reader workers that check
    files start, so that they load it instead of each compiling it (about 10 s, the first time on a machine)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "JPEG")
    scan_error(buf.getvalue())


def walk_scans(data) -> tuple[bool, str | None]:
    """Walk the JPEG ``data`` (bytes or a uint8 array): ``(walked, reason)``. ``walked`` is False when the file uses
    what the walk does not model (then ``reason`` is None and only a full decode can judge it); ``reason`` says what
    libjpeg would warn about, with the byte offset, or is None when every scan decodes cleanly."""
    code, offset = _walk(np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview))
                         else np.asarray(data, np.uint8))
    if code in (OK, NOT_MODELLED):
        return code == OK, None
    return True, f"{REASONS[code]} (at byte {offset})"


def scan_error(data) -> str | None:
    """What libjpeg would warn about in the JPEG ``data``'s entropy-coded data (:func:`walk_scans`), or None."""
    return walk_scans(data)[1]


@numba.njit(cache=True, nogil=True)
def _u16(data, at):
    return (np.int64(data[at]) << 8) | np.int64(data[at + 1])


@numba.njit(cache=True, nogil=True)
def _build_table(counts, row):
    """Fill a table's ``row`` (see :data:`LOOK`) from its code counts per length and its symbols (already at
    ``row[SYMBOLS:]``): canonical Huffman decoding tables (JPEG Annex C, libjpeg's jpeg_make_d_derived_tbl); False
    when the code lengths overflow (libjpeg: JERR_BAD_HUFF_TABLE)."""
    code = 0
    k = 0
    for length in range(1, 17):
        row[VALPTR + length] = k
        row[MINCODE + length] = code
        code += counts[length]
        k += counts[length]
        if code >= (1 << length):  # one past the last code must fit: no all-ones code
            return False
        row[MAXCODE + length] = code - 1 if counts[length] else -1
        code <<= 1
    row[LOOK:LOOK + 256] = -1
    for length in range(1, 9):  # 8-bit look-ahead: codes of up to 8 bits in one step
        for c in range(row[MINCODE + length], row[MAXCODE + length] + 1):
            sym = row[SYMBOLS + row[VALPTR + length] + c - row[MINCODE + length]]
            shift = 8 - length
            for low in range(1 << shift):
                row[LOOK + ((c << shift) | low)] = (length << 8) | sym
    return True


@numba.njit(cache=True, nogil=True)
def _walk(data):
    n = data.size
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return NOT_MODELLED, 0
    counts = np.zeros((8, 17), np.int64)  # tables: class * 4 + id
    tab = np.zeros((8, TABLE_WIDTH), np.int64)
    defined = np.zeros(8, np.bool_)
    ncomp = 0
    comp_id = np.zeros(4, np.int64)
    hs = np.zeros(4, np.int64)
    vs = np.zeros(4, np.int64)
    width = height = 0
    progressive = False
    frame = False
    restart = 0
    scanned = np.zeros(4, np.bool_)  # sequential: components whose scan is done
    coef_bits = np.full((4, 64), -1, np.int64)  # progressive: the last Al of each coefficient (-1: none yet)
    nonzero = np.zeros((1, 64), np.bool_)  # progressive: per block of each component, coefficients already nonzero
    comp_base = np.zeros(5, np.int64)
    comp_wblocks = np.zeros(4, np.int64)  # blocks per row of a component, padded to whole MCUs
    pos = 2
    while True:
        # the next marker: fill bytes 0xFF are allowed before it, anything else is not modelled here
        if pos + 1 >= n:
            return (TRUNCATED if progressive else (OK if frame and scanned[:ncomp].all() else TRUNCATED)), pos
        if data[pos] != 0xFF:
            return NOT_MODELLED, pos
        while pos + 1 < n and data[pos + 1] == 0xFF:
            pos += 1
        if pos + 1 >= n:
            return TRUNCATED, pos
        marker = np.int64(data[pos + 1])
        pos += 2
        if marker == 0xD9:  # EOI
            return OK, pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn outside a scan: no payload
            continue
        if marker == 0xD8:  # a second SOI
            return NOT_MODELLED, pos
        if pos + 2 > n:
            return TRUNCATED, pos
        length = _u16(data, pos)
        if length < 2:
            return NOT_MODELLED, pos
        end = pos + length
        if end > n:
            return TRUNCATED, pos
        body = pos + 2
        if marker in (0xC0, 0xC1, 0xC2):  # SOF0/1/2: Huffman, sequential or progressive
            if frame or length < 8:
                return NOT_MODELLED, pos
            frame = True
            progressive = marker == 0xC2
            height = _u16(data, body + 1)
            width = _u16(data, body + 3)
            ncomp = np.int64(data[body + 5])
            if height == 0 or width == 0 or ncomp < 1 or ncomp > 4 or length != 8 + 3 * ncomp:
                return NOT_MODELLED, pos
            for c in range(ncomp):
                comp_id[c] = data[body + 6 + 3 * c]
                hs[c] = data[body + 7 + 3 * c] >> 4
                vs[c] = data[body + 7 + 3 * c] & 15
                if hs[c] < 1 or hs[c] > 4 or vs[c] < 1 or vs[c] > 4:
                    return NOT_MODELLED, pos
            hmax, vmax = hs[:ncomp].max(), vs[:ncomp].max()
            mcux = (width + 8 * hmax - 1) // (8 * hmax)
            mcuy = (height + 8 * vmax - 1) // (8 * vmax)
            for c in range(ncomp):
                comp_wblocks[c] = mcux * hs[c]
                comp_base[c + 1] = comp_base[c] + mcux * hs[c] * mcuy * vs[c]
            if progressive:
                nonzero = np.zeros((comp_base[ncomp], 64), np.bool_)
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # lossless, hierarchical, arithmetic
            return NOT_MODELLED, pos
        elif marker == 0xCC or marker == 0xDC:  # DAC (arithmetic), DNL (height after the scan)
            return NOT_MODELLED, pos
        elif marker == 0xC4:  # DHT: one or more tables
            at = body
            while at < end:
                tc, th = data[at] >> 4, data[at] & 15
                if tc > 1 or th > 3 or at + 17 > end:
                    return BAD_TABLE, at
                t = tc * 4 + th
                total = 0
                for length_ in range(1, 17):
                    counts[t, length_] = data[at + length_]
                    total += data[at + length_]
                if total > 256 or at + 17 + total > end:
                    return BAD_TABLE, at
                for i in range(total):
                    tab[t, SYMBOLS + i] = data[at + 17 + i]
                if not _build_table(counts[t], tab[t]):
                    return BAD_TABLE, at
                defined[t] = True
                at += 17 + total
        elif marker == 0xDD:  # DRI
            if length != 4:
                return NOT_MODELLED, pos
            restart = _u16(data, body)
        elif marker == 0xDA:  # SOS: the scan header, then its entropy-coded data
            if not frame:
                return NOT_MODELLED, pos
            ns = np.int64(data[body])
            if ns < 1 or ns > 4 or length != 6 + 2 * ns:
                return NOT_MODELLED, pos
            sc = np.zeros(4, np.int64)
            dct = np.zeros(4, np.int64)
            act = np.zeros(4, np.int64)
            for i in range(ns):
                sc[i] = -1
                for c in range(ncomp):
                    if comp_id[c] == data[body + 1 + 2 * i]:
                        sc[i] = c
                if sc[i] < 0:
                    return NOT_MODELLED, pos
                dct[i] = data[body + 2 + 2 * i] >> 4
                act[i] = 4 + (data[body + 2 + 2 * i] & 15)
            ss = np.int64(data[end - 3])
            se = np.int64(data[end - 2])
            ah = np.int64(data[end - 1] >> 4)
            al = np.int64(data[end - 1] & 15)
            if progressive:
                if ss > se or se > 63 or (ss == 0 and se != 0) or (ss > 0 and ns != 1) or al > 13 or \
                        (ah != 0 and al != ah - 1):
                    return BAD_PROGRESSION, pos
                for i in range(ns):  # libjpeg's coef_bits check (jdphuff.c start_pass_phuff_decoder)
                    c = sc[i]
                    if ss > 0 and coef_bits[c, 0] < 0:
                        return BAD_PROGRESSION, pos
                    for k in range(ss, se + 1):
                        expected = coef_bits[c, k] if coef_bits[c, k] >= 0 else 0
                        if ah != expected:
                            return BAD_PROGRESSION, pos
                        coef_bits[c, k] = al
            else:  # sequential: libjpeg ignores Ss/Se/Ah/Al here (some baseline files write zeros)
                ss, se, ah, al = 0, 63, 0, 0
            for i in range(ns):
                if (ss == 0 and ah == 0 and (dct[i] > 3 or not defined[dct[i]])) or \
                        (se > 0 and (act[i] > 7 or not defined[act[i]])):
                    return NOT_MODELLED, pos
                if ss == 0 and ah == 0:
                    for j in range(counts[dct[i]].sum()):  # a DC table's symbols are magnitudes up to 15
                        if tab[dct[i], SYMBOLS + j] > 15:
                            return BAD_TABLE, pos
            code, pos = _scan(data, end, ns, sc, dct, act, ss, se, ah, restart, width, height, ncomp, hs, vs,
                              comp_wblocks, comp_base, nonzero, tab)
            if code != OK:
                return code, pos
            for i in range(ns):
                scanned[sc[i]] = True
            continue
        pos = end  # APPn, COM, DQT and the rest: skipped by their length


@numba.njit(cache=True, nogil=True)
def _scan(data, pos, ns, sc, dct, act, ss, se, ah, restart, width, height, ncomp, hs, vs, comp_wblocks, comp_base,
          nonzero, tab):
    """Decode one scan's codes from ``pos``; returns ``(code, position of the marker after the scan)``.

    Each entropy-coded segment (a scan, or one restart interval) is first copied without its byte stuffing into
    ``seg``, up to the marker that ends it; the codes are then read at a bit position ``p`` with scalar arithmetic
    (:func:`_bits`), which Numba compiles to a few instructions (a bit buffer carried through helper calls was 30x
    slower). Reading past the segment's end means the data ran into that marker (or the end of the file)."""
    hmax, vmax = hs[:ncomp].max(), vs[:ncomp].max()
    if ns > 1:  # interleaved: MCUs of every component's H x V blocks
        mcus_x = (width + 8 * hmax - 1) // (8 * hmax)
        mcus = mcus_x * ((height + 8 * vmax - 1) // (8 * vmax))
    else:  # one component: its own blocks, not padded to MCUs
        c = sc[0]
        mcus_x = ((width * hs[c] + hmax - 1) // hmax + 7) // 8
        mcus = mcus_x * (((height * vs[c] + vmax - 1) // vmax + 7) // 8)
    seg = np.empty(data.size - pos + 8, np.uint8)
    nbits, marker_at = _unstuff(data, pos, seg)
    ran_out = HIT_MARKER if marker_at >= 0 else TRUNCATED
    p = 0
    eobrun = 0
    next_rst = 0
    for m in range(mcus):
        if restart and m > 0 and m % restart == 0:  # libjpeg's process_restart: nothing left, then RSTn
            if (p + 7) // 8 * 8 < nbits:
                return EXTRANEOUS, marker_at
            if marker_at < 0:
                return TRUNCATED, data.size
            if data[marker_at + 1] != 0xD0 + next_rst:
                return BAD_RESTART, marker_at
            next_rst = (next_rst + 1) & 7
            nbits, marker_at = _unstuff(data, marker_at + 2, seg)
            ran_out = HIT_MARKER if marker_at >= 0 else TRUNCATED
            p = 0
            eobrun = 0
        for i in range(ns):
            c = sc[i]
            blocks = hs[c] * vs[c] if ns > 1 else 1
            for b in range(blocks):
                if ns > 1:
                    row = (m // mcus_x) * vs[c] + b // hs[c]
                    col = (m % mcus_x) * hs[c] + b % hs[c]
                else:
                    row, col = m // mcus_x, m % mcus_x
                blk = comp_base[c] + row * comp_wblocks[c] + col
                # --- one block ---
                if ss == 0:  # DC (sequential, or progressive DC first / refinement)
                    if ah == 0:
                        s, length = _decode(seg, p, tab, dct[i])
                        err = _code_error(s, p, p + length + s, nbits, ran_out)
                        if err != OK:
                            return err, marker_at
                        p += length + s
                    else:
                        p += 1
                        if p > nbits:
                            return ran_out, marker_at
                    if se == 0:
                        continue
                k = max(ss, 1)
                if ah == 0:  # sequential AC, or progressive AC first
                    if eobrun > 0:
                        eobrun -= 1
                        continue
                    while k <= se:
                        rs, length = _decode(seg, p, tab, act[i])
                        err = _code_error(rs, p, p + length, nbits, ran_out)
                        if err != OK:
                            return err, marker_at
                        p += length
                        r, s = rs >> 4, rs & 15
                        if s:
                            k += r
                            if k > se:
                                return RUN_PAST_BLOCK, marker_at
                            p += s
                            if p > nbits:
                                return ran_out, marker_at
                            if ss > 0:
                                nonzero[blk, k] = True
                        elif r == 15:
                            k += 15
                        else:
                            if ss > 0:  # progressive: an end-of-band run of 2**r + r bits blocks
                                if p + r > nbits:
                                    return ran_out, marker_at
                                eobrun = (1 << r) - 1 + (_bits(seg, p, r) if r else 0)
                                p += r
                            break
                        k += 1
                else:  # progressive AC refinement (libjpeg's decode_mcu_AC_refine)
                    if eobrun == 0:
                        while k <= se:
                            rs, length = _decode(seg, p, tab, act[i])
                            err = _code_error(rs, p, p + length, nbits, ran_out)
                            if err != OK:
                                return err, marker_at
                            p += length
                            r, s = rs >> 4, rs & 15
                            if s:
                                if s != 1:
                                    return BAD_CODE, marker_at
                                p += 1  # the new coefficient's sign
                            elif r != 15:
                                if p + r > nbits:
                                    return ran_out, marker_at
                                eobrun = (1 << r) + (_bits(seg, p, r) if r else 0)
                                p += r
                                break
                            while k <= se:  # a correction bit per nonzero coefficient, up to the r-th zero one
                                if nonzero[blk, k]:
                                    p += 1
                                else:
                                    r -= 1
                                    if r < 0:
                                        break
                                k += 1
                            if p > nbits:
                                return ran_out, marker_at
                            if s:
                                if k > se:
                                    return RUN_PAST_BLOCK, marker_at
                                nonzero[blk, k] = True
                            k += 1
                    if eobrun > 0:
                        while k <= se:
                            if nonzero[blk, k]:
                                p += 1
                            k += 1
                        if p > nbits:
                            return ran_out, marker_at
                        eobrun -= 1
    if (p + 7) // 8 * 8 < nbits:  # whole bytes after the last code: libjpeg discards them with a warning
        return EXTRANEOUS, marker_at
    if marker_at < 0:
        return TRUNCATED, data.size
    return OK, marker_at


@numba.njit(cache=True, nogil=True)
def _unstuff(data, pos, seg):
    """Copy the entropy-coded bytes from ``pos`` into ``seg`` without byte stuffing (``FF 00`` -> ``FF``), up to the
    next marker (fill bytes ``FF`` before it skipped), and zero the bytes after them so that reads past the end
    see zeros. Returns ``(bits copied, position of the marker's FF)`` (-1: the file ended first)."""
    n = data.size
    j = 0
    marker_at = -1
    while pos < n:
        byte = data[pos]
        if byte == 0xFF:
            q = pos + 1
            while q < n and data[q] == 0xFF:
                q += 1
            if q >= n:
                break
            if data[q] != 0:
                marker_at = q - 1
                break
            pos = q + 1
        else:
            pos += 1
        seg[j] = byte
        j += 1
    seg[j:j + 4] = 0
    return 8 * j, marker_at


@numba.njit(cache=True, nogil=True, inline="always")
def _bits(seg, p, k):
    """``k`` (up to 16) bits of ``seg`` at bit position ``p``, most significant first."""
    i = p >> 3
    x = (np.int64(seg[i]) << 16) | (np.int64(seg[i + 1]) << 8) | np.int64(seg[i + 2])
    return (x >> (24 - (p & 7) - k)) & ((1 << k) - 1)


@numba.njit(cache=True, nogil=True, inline="always")
def _code_error(symbol, p, end, nbits, ran_out):
    """``OK`` when the Huffman code read at bit ``p`` is one of the table's (``symbol`` >= 0) and it, with the bits
    that follow it, ends at ``end`` within the scan's ``nbits``; else ``BAD_CODE`` (no such code although 16 bits
    were there to read) or ``ran_out`` (the scan's data ended first)."""
    if symbol >= 0 and end <= nbits:
        return OK
    return BAD_CODE if symbol < 0 and p + 16 <= nbits else ran_out


@numba.njit(cache=True, nogil=True, inline="always")
def _decode(seg, p, tab, t):
    """``(symbol, code length)`` of the Huffman code of table ``t`` at bit ``p`` (symbol -1: no such code)."""
    peek = _bits(seg, p, 16)
    hit = tab[t, LOOK + (peek >> 8)]
    if hit >= 0:
        return hit & 255, hit >> 8
    for length in range(9, 17):
        code = peek >> (16 - length)
        if code <= tab[t, MAXCODE + length]:
            return tab[t, SYMBOLS + tab[t, VALPTR + length] + code - tab[t, MINCODE + length]], length
    return -1, 16
