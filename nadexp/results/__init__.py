"""Where a run's results are written: result.json's schema and its one reader (``record``), atomic writes (``atomic``), claims on folders
and groups of cells (``claims``), resuming a run folder (``resume``) and the machine a result came from (``machine``)."""
