import sqlalchemy as sa

from nebras_bot.support import db


def test_default_url_is_sqlite_under_var(tmp_path, monkeypatch):
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    monkeypatch.delenv("NEBRAS_DB_URL", raising=False)
    from nebras_bot.support.settings import SupportSettings

    assert SupportSettings().resolved_db_url() == f"sqlite:///{tmp_path / 'var' / 'nebras.db'}"


def test_migrate_creates_every_table_and_records_versions(settings):
    engine = db.create_engine(settings.resolved_db_url(), settings)
    assert db.migrate(engine) == db.SCHEMA_VERSION
    names = set(sa.inspect(engine).get_table_names())
    assert {"tickets", "orders", "feedback", "ticket_outbox", "harvest", "learning_watermarks", "nebras_schema"} <= names
    # a second start applies nothing and keeps one row per version
    assert db.migrate(engine) == db.SCHEMA_VERSION
    with engine.connect() as connection:
        versions = connection.execute(sa.select(db.schema_versions.c.version)).scalars().all()
    assert sorted(versions) == [v for v, _, _ in db.MIGRATIONS]


def test_migrate_upgrades_an_old_schema(settings):
    engine = db.create_engine(settings.resolved_db_url(), settings)
    version, description, apply = db.MIGRATIONS[0]
    db._apply(engine, version, description, apply)
    assert "harvest" not in sa.inspect(engine).get_table_names()
    assert db.migrate(engine) == db.SCHEMA_VERSION
    assert "harvest" in sa.inspect(engine).get_table_names()


def test_connection_errors_are_retryable_and_integrity_errors_are_not():
    operational = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    integrity = sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert db.is_connection_error(operational)
    assert not db.is_connection_error(integrity)
    assert not db.is_connection_error(ValueError("x"))
