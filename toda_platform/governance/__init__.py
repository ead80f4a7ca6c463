"""Data governance from the catalogue itself, so that what families are told never drifts from
what the platform does (issue 14):

* :mod:`.purposes`   every output asset's purpose, checked against the purposes of each source
                     it reads through its lineage — the definitions refuse to load otherwise;
* :mod:`.documents`  the notice to families (``toda notice``, the portal's ``/notice/``) and the
                     register of personal-information files (``toda register``);
* :mod:`.retention`  the retention period of each source applied to the warehouse and the files
                     (``toda retention``);
* :mod:`.erasure`    one pupil erased everywhere under ``TODA_HOME`` and kept out of rebuilds
                     (``toda erase``);
* :mod:`.keys`       the pseudonym key rotated (``toda keys rotate``);
* :mod:`.audit_subjects`  the erasable secrets behind the portal audit log's subject
                     commitments (crypto-shredding on erasure, re-pointed on rotation).

Only :mod:`.purposes` imports Dagster (lazily, for the asset graph it is given).
"""
