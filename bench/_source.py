"""The commit this source was exported from, stamped by ``git archive`` (``export-subst`` in
``.gitattributes``; GitHub's release tarballs are made that way). In a git work tree or a plain copy
the placeholder stays unsubstituted and :func:`albench.env.git_state` ignores it."""

ARCHIVE_SHA = "$Format:%H$"
