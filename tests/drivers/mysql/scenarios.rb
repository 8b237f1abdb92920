# Active Record (Rails 6.1's ORM) on the mysql2 gem, run by tests/mysql_drivers.rs through the
# proxy and directly against the MariaDB primary; the outputs must be equal.
#
# Usage: ruby scenarios.rb SCENARIO [ARGS]   (server under test: SY_HOST, SY_PORT, SY_USER,
# SY_PASSWORD, SY_DB)
#
# `rails THREADS ROUNDS`: an Active Record pool of THREADS connections, each set up as the
# mysql2 adapter sets one up (one `SET NAMES utf8mb4 COLLATE ..., @@SESSION.sql_mode =
# CONCAT(...), @@SESSION.sql_auto_is_null = 0, @@SESSION.wait_timeout = ...` with the
# configured `variables`), used by THREADS threads at once as a Rails application's request
# threads use it: models created, found and updated, transactions committed and rolled back, a
# unique violation inside one. A plain connection beside them must see the server's defaults
# between rounds.
#
# Prints one fact a line, then END. The harness kills the process after its deadline.

require "active_record"
require "mysql2"

$stdout.sync = true

def target
  {
    adapter: "mysql2",
    host: ENV.fetch("SY_HOST", "127.0.0.1"),
    port: ENV.fetch("SY_PORT").to_i,
    database: ENV.fetch("SY_DB"),
    username: ENV.fetch("SY_USER"),
    password: ENV["SY_PASSWORD"],
    connect_timeout: 10,
    read_timeout: 30,
  }
end

class MyArItem < ActiveRecord::Base
  self.table_name = "ar_item"
end

def scenario_rails(threads, rounds)
  ActiveRecord::Base.default_timezone = :utc
  ActiveRecord::Base.establish_connection(target.merge(
    pool: threads,
    checkout_timeout: 20,
    encoding: "utf8mb4",
    collation: "utf8mb4_unicode_ci",
    variables: { "time_zone" => "+02:00", "group_concat_max_len" => 4096 },
  ))
  plain = Mysql2::Client.new(host: target[:host], port: target[:port], database: target[:database],
                             username: target[:username], password: target[:password],
                             connect_timeout: 10, read_timeout: 30)
  show = "SELECT @@collation_connection, @@sql_mode, @@sql_auto_is_null, @@wait_timeout, " \
         "@@time_zone, @@group_concat_max_len"
  step = Queue.new
  done = Queue.new
  said = Array.new(threads) { [] }
  workers = (0...threads).map do |i|
    Thread.new do
      rounds.times do |r|
        step.pop
        begin
          ActiveRecord::Base.connection_pool.with_connection do |c|
            said[i] << "round #{r}: session #{c.select_rows(show).first.join(' | ')}"
            item = MyArItem.create!(who: i, note: "round #{r}")
            found = MyArItem.find(item.id)
            said[i] << "round #{r}: found #{found.who} #{found.note}"
            MyArItem.transaction do
              MyArItem.where(id: item.id).update_all(note: "round #{r} of #{i}")
              MyArItem.create!(who: i, note: "kept #{r}")
              raise ActiveRecord::Rollback if (i + r) % 4 == 3
            end
            if (i + r) % 5 == 2
              begin
                MyArItem.transaction do
                  MyArItem.create!(id: item.id, who: i, note: "duplicate")
                end
              rescue ActiveRecord::RecordNotUnique => e
                said[i] << "round #{r}: duplicate #{e.cause.class} #{c.transaction_open?}"
              end
            end
            said[i] << "round #{r}: count #{MyArItem.where(who: i).count} " \
                       "notes #{MyArItem.where(who: i).order(:id).pluck(:note).join(',')}"
          end
        rescue => e
          said[i] << "round #{r}: error #{e.class} #{e.message.lines.first.to_s.strip}"
        end
        done.push(i)
      end
    end
  end
  rounds.times do |r|
    threads.times { step.push(r) }
    threads.times { done.pop }
    v = plain.query(show, as: :array).first
    puts "plain connection, round #{r}: #{v.join(' | ')}"
  end
  workers.each(&:join)
  said.each_with_index { |lines, i| lines.each { |l| puts "thread #{i}: #{l}" } }
  ActiveRecord::Base.connection_pool.disconnect!
  plain.close
end

case ARGV[0]
when "rails"
  scenario_rails(Integer(ARGV[1] || 6), Integer(ARGV[2] || 4))
else
  warn "unknown scenario #{ARGV[0]}"
  exit 2
end
puts "END"
