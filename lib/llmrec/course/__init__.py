"""The course's machinery: what runs, records, checks and publishes the course, apart from the
science a learner studies (the modules of llmrec itself). Nothing in llmrec imports this package.

    runner      the course runner: every notebook in order through papermill, with one preset
    parameters  the notebooks' parameters: declared names, checked values
    record      a notebook's numbers and figures to results/ and runs/<preset>/figures/
    figures     the reference-figure check (figures/ against a run) and its refresh
    papers      what the papers report and how they trained (data/papers/); a preset's fidelity
    report      the claims table and README's generated sections
    site        the executed notebooks as a static website
    student     the student edition: notebooks without solutions
    workshop    the workshop's schedule from the measured course times
    system      what notebook 00 checks: the machine, the data, the models
    cli         `python -m llmrec <command>`
"""
