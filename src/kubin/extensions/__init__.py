"""Extensions: folders under extensions/ that add tabs and hooks, loaded so that none can crash Kubin."""
