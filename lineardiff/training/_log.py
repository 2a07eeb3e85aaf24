"""The per-step CSV log of a training run (continued exactly across resumes)."""

from __future__ import annotations

import os
from pathlib import Path

CSV_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds", "resolution", "cpu_seconds")
# the columns before cpu_seconds was added: such a file is continued with that column
# empty in its old rows (readers fall back to the wall time there)
_OLD_COLUMNS = CSV_COLUMNS[:-1]


class CsvLog:
    """One row per step, flushed at once; an existing file is continued after ``start``."""

    def __init__(self, path, start: int) -> None:
        path = Path(path)
        if not path.parent.is_dir():
            raise ValueError(f"train: expected an existing folder for log_csv {path}, got none")
        header = ",".join(CSV_COLUMNS)
        if path.is_file() and path.stat().st_size > 0:
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            old = lines[0] == ",".join(_OLD_COLUMNS)
            if lines[0] != header and not old:
                raise ValueError(
                    f"train: expected log_csv {path} with the columns {header!r}, got "
                    f"{lines[0][:80]!r}; log to another file"
                )
            kept = [header]
            for line in lines[1:]:
                # rows past the start (written after the last checkpoint of a crashed run)
                # are repeated by this run; a row cut short by the crash is dropped too
                fields = line.split(",")
                if len(fields) == len(_OLD_COLUMNS if old else CSV_COLUMNS) and \
                        fields[0].isdigit() and int(fields[0]) <= start:
                    kept.append(line + "," if old else line)
            new = "\n".join(kept) + "\n"
            if new != text:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(new, encoding="utf-8")
                os.replace(tmp, path)
        else:
            path.write_text(header + "\n", encoding="utf-8")
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, step, loss, lr, grad_norm, seconds, resolution, cpu_seconds) -> None:
        norm = "" if grad_norm is None else repr(grad_norm)
        self._file.write(
            f"{step},{loss!r},{lr!r},{norm},{seconds:.6f},{resolution},{cpu_seconds:.6f}\n"
        )
        # flushed every step: the rows of all steps up to a checkpoint are on disk (in the
        # OS cache, which survives a killed process) before that checkpoint is written
        self._file.flush()

    def close(self) -> None:
        self._file.close()
