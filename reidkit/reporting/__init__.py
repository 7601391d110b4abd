"""``reidkit report``: one self-contained HTML page per training run or comparison of runs."""
