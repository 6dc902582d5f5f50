"""Where the federated audit lives (a map, kept so that `audit.federated.X` still imports; new code imports the
modules themselves). Each module holds one concept:

    audit/stats_files.py   stats files: the model's identity, write, read, which files may merge
    audit/noise.py         differential-privacy noise of a stats file and how noised numbers are reported
    audit/replicates.py    bootstrap replicates of merged statistics (released, or drawn from noised counts)
    audit/from_stats.py    measurements from statistics: the registry's statistics forms
    audit/silo.py          `audit stats`: a silo's statistics, computed where the rows and the model are
    audit/merge.py         `audit merge`: judge the union of silos' statistics
    audit/result_writer.py result.json of every kind of run (its `statistics` section included) and its folder
"""

from audit.from_stats import NOT_MEASURABLE, measure_stats  # noqa: F401
from audit.merge import run_merge  # noqa: F401
from audit.noise import add_noise, describe_epsilons, mark_noised, noise_sensitivity  # noqa: F401
from audit.replicates import Replicates  # noqa: F401
from audit.result_writer import statistics_section  # noqa: F401
from audit.silo import compute_silo_stats  # noqa: F401
from audit.stats_files import (  # noqa: F401
    FORMAT,
    FORMAT_VERSION,
    REVEALS,
    StatsError,
    check_stats_out,
    known_groups,
    load_stats,
    merge_files,
    model_identity,
    reveals,
    source_rows_estimate,
    stats_document,
    write_json_atomic,
)
