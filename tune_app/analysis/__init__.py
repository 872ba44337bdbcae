"""After a run: what it came to, read back without Ray, scored, said and drawn.

A run's outcome, one module per job:
- `outcome`: what a run came to, as data (trials' metrics, the winner and the control with
  their z-unit MSEs, the exploits behind the winner and what followed each exploit);
  `importances`: a capacity search's parameter importances on the space it recorded.
- `text`: the same in words: what `search` and `best` print (never loading matplotlib);
  `answer`: the report's opening sentences; `certificate`: a certificate's verdict in words.
- `figures`: the report's PNG figures (matplotlib's object API, no pyplot, no backend switch).
- `page`: `tune-app report`'s HTML page and its Markdown twin.

Scoring and statistics: `evaluate` (a checkpoint against naive forecasts; `season` finds the
seasonal period), `certification` (does plan B beat plan A beyond seed noise), `comparison`
(a compare run's trials scored on the test split).
"""
