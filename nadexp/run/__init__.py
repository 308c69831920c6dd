"""Where a run is decided: its task (``tasks``), its identity and folder name (``identity``), the checks of its
settings (``settings``) and of its folder (``writable``), and ``execute``, which builds the run once and runs it."""
