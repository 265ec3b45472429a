"""dr.redact on commands: the MySQL/MariaDB ``-pSECRET`` form and ``--password SECRET``.

A hook's command is recorded (results, dump records, `dr backups describe`) and may be
echoed on its stderr (``sh -x``), which is quoted in errors, logs and Events. Both the
command as one shell string (``redact``) and as an argument list (``redact_argv``) are
masked — without mangling the many commands in which ``-p`` is no password.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.redact import MYSQL_CLIENTS, redact, redact_argv

R = "[REDACTED]"

# (command as a shell string, as it must be recorded)
SHELL_CASES = [
    # The MySQL/MariaDB clients' password glued to -p, in every quoting.
    ("mysqldump -u root -phunter2 db", f"mysqldump -u root -p{R} db"),
    ("mysql -uroot -p'hunt er2' -e 'FLUSH TABLES'", f"mysql -uroot -p{R} -e 'FLUSH TABLES'"),
    ('mysql -p"hunter2" app', f"mysql -p{R} app"),
    ("mysql -phun'ter 2'x app", f"mysql -p{R} app"),
    ("/usr/bin/mysqldump -phunter2 --single-transaction app", f"/usr/bin/mysqldump -p{R} --single-transaction app"),
    ("mariadb-dump -h db -P 3306 -phunter2 app", f"mariadb-dump -h db -P 3306 -p{R} app"),
    ("mariadb -phunter2", f"mariadb -p{R}"),
    ("mariabackup --backup -phunter2 --target-dir=/b", f"mariabackup --backup -p{R} --target-dir=/b"),
    ("mysqladmin -phunter2 ping", f"mysqladmin -p{R} ping"),
    ('sh -c "mysqldump -phunter2 app | gzip"', f'sh -c "mysqldump -p{R} app | gzip"'),
    ("set -e; mysqldump -phunter2 app > /b/app.sql", f"set -e; mysqldump -p{R} app > /b/app.sql"),
    ("+ mysqldump -u root -phunter2 app", f"+ mysqldump -u root -p{R} app"),  # sh -x on stderr
    ("mysql -e 'select 1; select 2' -phunter2", f"mysql -e 'select 1; select 2' -p{R}"),
    # A password as the next argument of a --…password / --…token / --…secret option.
    ("mysqldump --password hunter2 app", f"mysqldump --password {R} app"),
    ("mongodump --db-password 'hunt er2' --db app", f"mongodump --db-password {R} --db app"),
    ("kubectl --token abc.def get pods", f"kubectl --token {R} get pods"),
    ("tool --client-secret s3cr3t run", f"tool --client-secret {R} run"),
    # An argument list quoted in a text (JSON, Python's repr).
    ('["mysqldump", "-u", "root", "-phunter2", "db"]', f'["mysqldump", "-u", "root", "-p{R}", "db"]'),
    ("['mysql', '-p', 'app']", "['mysql', '-p', 'app']"),
    ('["mysql", "-p", "app"]', '["mysql", "-p", "app"]'),
    ('["mongodump", "--password", "hunter2"]', f'["mongodump", "--password", "{R}"]'),
    # Already masked before: unchanged.
    ("PGPASSWORD=hunter2 pg_dump --password=s3cret app", f"PGPASSWORD={R} pg_dump --password={R} app"),
    # -p that is no password: not touched.
    ("mkdir -p /x", "mkdir -p /x"),
    ("cp -p a b", "cp -p a b"),
    ("cp -pr /var/lib/mysql /b", "cp -pr /var/lib/mysql /b"),
    ("ssh -p 22 host", "ssh -p 22 host"),
    ("ssh -p22 host mysql", "ssh -p22 host mysql"),
    ("pg_dump -p 5432 app", "pg_dump -p 5432 app"),
    ("pg_dump -p5432 app", "pg_dump -p5432 app"),
    ("mysql -p app", "mysql -p app"),  # -p alone: mysql asks (and app is the database)
    ("mysql -P 3306 -p -h db app", "mysql -P 3306 -p -h db app"),
    ("mysql --port=3306 --protocol=tcp app", "mysql --port=3306 --protocol=tcp app"),
    ("mysqldump -phunter2 app && cp -pr /b /c", f"mysqldump -p{R} app && cp -pr /b /c"),
    ("mysqldump app; mkdir -p /x; cp -pr a b", "mysqldump app; mkdir -p /x; cp -pr a b"),
    ("tar -C /var/lib/mysql -cpf - .", "tar -C /var/lib/mysql -cpf - ."),
    ("ls /var/lib/mysql -pla", "ls /var/lib/mysql -pla"),
    ("mysql-0 -pfoo", "mysql-0 -pfoo"),  # a pod's name, no client
    ("mysqldump: [Warning] Using a password on the command line interface can be insecure.",
     "mysqldump: [Warning] Using a password on the command line interface can be insecure."),
    ("pg_dump --no-password --dbname app", "pg_dump --no-password --dbname app"),
    ("mysql --password --user root app", "mysql --password --user root app"),
    ("curl --password-file /run/pw https://x", "curl --password-file /run/pw https://x"),
]  # fmt: skip

# (argument list, as it must be recorded)
ARGV_CASES = [
    (["mysqldump", "-u", "root", "-phunter2", "db"], ["mysqldump", "-u", "root", f"-p{R}", "db"]),
    (["/usr/bin/mysql", "-p'hunter2'", "app"], ["/usr/bin/mysql", f"-p{R}", "app"]),
    (["env", "TZ=UTC", "mariadb-dump", "-phunter2"], ["env", "TZ=UTC", "mariadb-dump", f"-p{R}"]),
    (["mysqldump", "--password", "hunter2", "app"], ["mysqldump", "--password", R, "app"]),
    (["mongodump", "--password", "hunt er2"], ["mongodump", "--password", R]),
    (["sh", "-c", "mysqldump -phunter2 app"], ["sh", "-c", f"mysqldump -p{R} app"]),
    (["mysql", "-p", "app"], ["mysql", "-p", "app"]),
    (["mysql", "--password", "--user", "root"], ["mysql", "--password", "--user", "root"]),
    (["mkdir", "-p", "/x"], ["mkdir", "-p", "/x"]),
    (["cp", "-p", "a", "b"], ["cp", "-p", "a", "b"]),
    (["cp", "-pr", "/var/lib/mysql", "/b", "-pr"], ["cp", "-pr", "/var/lib/mysql", "/b", "-pr"]),
    (["ssh", "-p", "22", "host"], ["ssh", "-p", "22", "host"]),
    (["pg_dump", "-p", "5432", "app"], ["pg_dump", "-p", "5432", "app"]),
    (["pg_dump", "-p5432", "--no-password", "app"], ["pg_dump", "-p5432", "--no-password", "app"]),
    (["mysql", "-P", "3306", "-P3306", "--port", "3306"], ["mysql", "-P", "3306", "-P3306", "--port", "3306"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "recorded"), SHELL_CASES)
def test_a_command_line_is_masked_where_it_holds_a_password_only(text: str, recorded: str) -> None:
    assert redact(text) == recorded
    assert redact(recorded) == recorded  # masked again (a quoted error logged): the same


@pytest.mark.parametrize(("argv", "recorded"), ARGV_CASES)
def test_an_argument_list_is_masked_where_it_holds_a_password_only(
    argv: list[str], recorded: list[str]
) -> None:
    assert redact_argv(argv) == recorded
    assert redact_argv(recorded) == recorded


def test_the_client_family() -> None:
    assert {"mysql", "mysqldump", "mysqladmin", "mysqlpump", "mariadb", "mariadb-dump", "mariabackup"} <= set(
        MYSQL_CLIENTS
    )


# Words of a command that are no secret under any rule (no '=', ':', '@', no secret-like name).
WORDS = st.sampled_from(["-p", "-pr", "-p22", "-P", "-P3306", "3306", "-v", "--port", "-a", "-c", "app", "/x",
                         "/var/lib/mysql", "mysql-0", "a.sql", "-pv", "-Rp", "&&", ";", "|"])  # fmt: skip
ARGS = st.lists(WORDS | st.from_regex(r"-{0,2}[a-z0-9/._]{1,8}", fullmatch=True), max_size=8)
OTHER_PROGRAMS = st.sampled_from(["mkdir", "cp", "ssh", "scp", "rsync", "pg_dump", "psql", "tar", "ls", "sh"])
CLIENTS = st.sampled_from(sorted(MYSQL_CLIENTS))
PASSWORDS = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="'\";&|"), min_size=1
)


def _plain(arg: str) -> bool:
    """Neither a client's name (``mysql``, ``…/bin/mysql``) nor a ``--…password``-like option."""
    folder, _, name = arg.rpartition("/")
    client = name in MYSQL_CLIENTS and (not folder or folder.endswith("bin"))
    return not client and not re.search("password|passwd|pwd|token|secret", arg)


@settings(max_examples=300, deadline=None)
@given(OTHER_PROGRAMS, ARGS)
def test_no_other_program_is_touched(program: str, args: list[str]) -> None:
    # Any -p of a program that is not a MySQL/MariaDB client stays as it is (unless a
    # client's name follows, as in `ssh host mysql -pX`, which masks that client's -pX).
    args = [a for a in args if _plain(a)]
    argv = [program, *args]
    assert redact_argv(argv) == argv
    assert redact(" ".join(argv)) == " ".join(argv)


@settings(max_examples=300, deadline=None)
@given(CLIENTS, ARGS, PASSWORDS, ARGS)
def test_a_clients_glued_password_is_masked_and_nothing_else(
    client: str, before: list[str], password: str, after: list[str]
) -> None:
    seps = {"&&", ";", "|"}
    before = [a for a in before if a not in seps and not a.startswith("-p") and _plain(a)]
    after = [a for a in after if a not in seps and not a.startswith("-p") and _plain(a)]
    argv = [client, *before, f"-p{password}", *after]
    masked = [client, *before, f"-p{R}", *after]
    assert redact_argv(argv) == masked
    assert redact(" ".join(argv)) == " ".join(masked) == redact(" ".join(masked))
    assert redact(" ".join([client, *before, f"-p'{password} {password}'", *after])) == " ".join(masked)


@pytest.mark.parametrize(
    "text",
    [
        "," * 100_000,
        "(" * 100_000,
        ";" * 100_000,
        "(mysql" * 20_000,
        "'" * 100_000,
        "mysql " + "a " * 50_000,
        "mysql '" + "a" * 100_000,
        "--password " * 10_000,
        "--password" + " " * 100_000 + "-",
        "a://" * 50_000,
        "a://a:" * 20_000 + "@",
        "-----BEGIN RSA PRIVATE KEY-----" * 6_500,
        "-----BEGIN PRIVATE KEY-----" + "-----END" * 10_000,
    ],
    ids=[
        "commas",
        "parens",
        "semicolons",
        "names",
        "quotes",
        "unterminated",
        "quote",
        "options",
        "spaces",
        "urls",
        "userinfo",
        "key-begins",
        "key-ends",
    ],
)
def test_a_long_hostile_text_takes_linear_time(text: str) -> None:
    # Every log line and a hook's stderr window go through redact(): 100 KB must not take
    # seconds (the bin/ path was once looked for from each of a run of "(": 17 s; a URL's
    # password from each of a run of "a://": 48 s for 200 KB; a key from each BEGIN: 7 s).
    start = time.monotonic()
    redact(text)
    assert time.monotonic() - start < 1


def test_a_clients_path_after_a_separator_is_found() -> None:
    # The bin/ path starts after the last of the characters a name may follow.
    assert redact("x,/usr/local/bin/mysql -pS") == f"x,/usr/local/bin/mysql -p{R}"
    assert redact("(/opt/a,b/bin/mysqldump -pS") == f"(/opt/a,b/bin/mysqldump -p{R}"
    assert redact("mysql -u a;/usr/bin/mysql -pS") == f"mysql -u a;/usr/bin/mysql -p{R}"


def test_a_private_key_cut_short_is_masked_to_the_end_or_the_next_key() -> None:
    # A hook's stderr tail may end inside a key; a second key may follow one without END.
    cut = "log\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert redact(cut) == f"log\n{R}"
    two = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\nok"
    assert redact(two) == f"{R}{R}\nok"
    whole = "x -----BEGIN EC PRIVATE KEY-----\nCCCC\n-----END EC PRIVATE KEY----- y"
    assert redact(whole) == f"x {R} y"


def test_a_url_password_is_masked_next_to_other_urls() -> None:
    # The user info goes whole (user and password), as before the password was bounded.
    assert redact("see a://b and s3://key:secret@host/p") == f"see a://b and s3://{R}@host/p"
    assert redact("http://u:p/w@h a://x") == f"http://{R}@h a://x"
