"""The audit log names pupils by subject commitments instead of pseudonyms (crypto-shredding):
the field is renamed and every format-1 entry rewritten after its chain is verified
(portal/audit.py ``upgrade``)."""

from django.db import migrations


def upgrade(apps, schema_editor):
    from portal.audit import upgrade as rewrite

    rewrite(apps.get_model("portal", "AuditEntry"))


class Migration(migrations.Migration):

    dependencies = [("portal", "0001_initial")]

    operations = [
        migrations.RenameField(model_name="auditentry", old_name="pupil_ids", new_name="subjects"),
        migrations.RunPython(upgrade, migrations.RunPython.noop),
    ]
