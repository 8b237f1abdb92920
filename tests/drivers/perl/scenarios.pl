#!/usr/bin/perl
# Perl's DBI on DBD::Pg (libpq), run by tests/pg_drivers.rs through the proxy and directly
# against the primary; the outputs must be equal.
#
# Usage: perl scenarios.pl SCENARIO [ARGS]   (server under test: SY_HOST, SY_PORT, SY_USER,
# SY_PASSWORD, SY_DB)
#
# `dbi CONNECTIONS ROUNDS`: CONNECTIONS handles with AutoCommit off (DBD::Pg then begins a
# transaction before the first statement after each commit or rollback), each setting its
# time zone and search_path in its first transaction, used in turn from one process: a
# statement prepared and executed three times (DBD::Pg prepares it on the server as a named
# statement once it runs again, and deallocates it when the handle goes), an INSERT ...
# RETURNING committed or rolled back, a count. A connection that holds the proxy's only
# server connection for good would stall the others.
#
# Prints one fact a line, then END.
use strict;
use warnings;
use DBI;

$| = 1;
my ($scenario, @args) = @ARGV;
my $dsn = sprintf("dbi:Pg:dbname=%s;host=%s;port=%s;connect_timeout=10",
    $ENV{SY_DB}, $ENV{SY_HOST} || "127.0.0.1", $ENV{SY_PORT});
my $pw = $ENV{SY_PASSWORD} // "";

sub connect_db {
    return DBI->connect($dsn, $ENV{SY_USER}, $pw,
        {AutoCommit => 0, RaiseError => 1, PrintError => 0});
}

sub scenario_dbi {
    my ($conns, $rounds) = @_;
    my @dbh;
    for my $i (0 .. $conns - 1) {
        my $d = connect_db();
        $d->do("SET TIME ZONE 'Asia/Tokyo'") if $i % 2;
        $d->do("SET search_path TO dbi_app, public");
        $d->commit;
        push @dbh, $d;
    }
    for my $r (0 .. $rounds - 1) {
        for my $i (0 .. $#dbh) {
            my $d = $dbh[$i];
            my $sth = $d->prepare(
                "SELECT current_setting('TimeZone'), current_setting('search_path'), ?::int");
            for my $k (1 .. 3) {
                $sth->execute($i);
                my @row = $sth->fetchrow_array;
                print "r$r c$i @row\n" if $k == 3;
            }
            $sth->finish;
            undef $sth;
            my $ins = $d->prepare("INSERT INTO dbi_item (who, note) VALUES (?, ?) RETURNING who");
            $ins->execute($i, "round $r");
            my ($who) = $ins->fetchrow_array;
            if (($i + $r) % 3 == 0) {
                $d->rollback;
                print "r$r c$i $who rolled back\n";
            } else {
                $d->commit;
                print "r$r c$i $who committed\n";
            }
            my $n = $d->selectrow_array("SELECT count(*) FROM dbi_item WHERE who = ?", undef, $i);
            print "r$r c$i count $n\n";
            $d->commit;
        }
        my $plain = DBI->connect($dsn, $ENV{SY_USER}, $pw, {AutoCommit => 1, RaiseError => 1});
        my @s = $plain->selectrow_array(
            "SELECT current_setting('search_path'), current_setting('TimeZone')");
        print "r$r plain @s\n";
        $plain->disconnect;
    }
    $_->disconnect for @dbh;
}

if ($scenario eq "dbi") {
    scenario_dbi($args[0] // 6, $args[1] // 4);
} else {
    print STDERR "unknown scenario $scenario\n";
    exit 2;
}
print "END\n";
