-- Copied unchanged from ../shared/debezium-corpus/sql/01_setup.sql: the SQL that produced the recorded corpus.
-- 01_setup.sql : schema + seed data (captured by the initial snapshot, op "r")
-- Modelled on the Debezium tutorial "inventory" database (debezium/example-postgres + MySQL addresses table),
-- plus a type_zoo table and a table without a primary key.
\set ON_ERROR_STOP on
CREATE SCHEMA inventory;
SET search_path TO inventory;

CREATE TYPE inventory.address_type AS ENUM ('SHIPPING', 'BILLING', 'LIVING');
CREATE TYPE inventory.mood AS ENUM ('sad', 'ok', 'happy');

CREATE TABLE products (
  id SERIAL NOT NULL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  description VARCHAR(512),
  weight FLOAT
);
ALTER SEQUENCE products_id_seq RESTART WITH 101;
INSERT INTO products
VALUES (default,'scooter','Small 2-wheel scooter',3.14),
       (default,'car battery','12V car battery',8.1),
       (default,'12-pack drill bits','12-pack of drill bits with sizes ranging from #40 to #3',0.8),
       (default,'hammer','12oz carpenter''s hammer',0.75),
       (default,'hammer','14oz carpenter''s hammer',0.875),
       (default,'hammer','16oz carpenter''s hammer',1.0),
       (default,'rocks','box of assorted rocks',5.3),
       (default,'jacket','water resistent black wind breaker',0.1),
       (default,'spare tire','24 inch spare tire',22.2);

CREATE TABLE products_on_hand (
  product_id INTEGER NOT NULL PRIMARY KEY,
  quantity INTEGER NOT NULL,
  FOREIGN KEY (product_id) REFERENCES products(id)
);
INSERT INTO products_on_hand VALUES (101,3),(102,8),(103,18),(104,4),(105,5),(106,0),(107,44),(108,2),(109,5);

CREATE TABLE customers (
  id SERIAL NOT NULL PRIMARY KEY,
  first_name VARCHAR(255) NOT NULL,
  last_name VARCHAR(255) NOT NULL,
  email VARCHAR(255) NOT NULL UNIQUE
);
ALTER SEQUENCE customers_id_seq RESTART WITH 1001;
-- the one PK table with REPLICA IDENTITY FULL (as in the Debezium tutorial)
ALTER TABLE customers REPLICA IDENTITY FULL;
INSERT INTO customers
VALUES (default,'Sally','Thomas','sally.thomas@acme.com'),
       (default,'George','Bailey','gbailey@foobar.com'),
       (default,'Edward','Walker','ed@walker.com'),
       (default,'Anne','Kretchmar','annek@noanswer.org');

CREATE TABLE addresses (
  id SERIAL NOT NULL PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  street VARCHAR(255) NOT NULL,
  city VARCHAR(255) NOT NULL,
  state VARCHAR(255) NOT NULL,
  zip VARCHAR(255) NOT NULL,
  type inventory.address_type NOT NULL
);
ALTER SEQUENCE addresses_id_seq RESTART WITH 10;
INSERT INTO addresses
VALUES (default,1001,'3183 Moore Avenue','Euless','Texas','76036','SHIPPING'),
       (default,1001,'2389 Hidden Valley Road','Harrisburg','Pennsylvania','17116','BILLING'),
       (default,1002,'281 Riverside Drive','Augusta','Georgia','30901','BILLING'),
       (default,1003,'3787 Brownton Road','Columbus','Mississippi','39701','SHIPPING'),
       (default,1003,'2458 Lost Creek Road','Bethlehem','Pennsylvania','18018','SHIPPING'),
       (default,1003,'4800 Simpson Square','Hillsdale','Oklahoma','74743','BILLING'),
       (default,1004,'1289 University Hill Road','Canehill','Arkansas','72717','LIVING');

CREATE TABLE orders (
  id SERIAL NOT NULL PRIMARY KEY,
  order_date DATE NOT NULL,
  purchaser INTEGER NOT NULL REFERENCES customers(id),
  quantity INTEGER NOT NULL,
  product_id INTEGER NOT NULL REFERENCES products(id)
);
ALTER SEQUENCE orders_id_seq RESTART WITH 10001;
INSERT INTO orders
VALUES (default, '2016-01-16', 1001, 1, 102),
       (default, '2016-01-17', 1002, 2, 105),
       (default, '2016-02-19', 1002, 2, 106),
       (default, '2016-02-21', 1003, 1, 107);

-- Table without a primary key. It needs REPLICA IDENTITY FULL, otherwise PostgreSQL itself rejects
-- UPDATE/DELETE on it once it is in a publication that publishes updates/deletes.
CREATE TABLE audit_log (
  event_time TIMESTAMPTZ NOT NULL,
  actor      VARCHAR(64) NOT NULL,
  action     TEXT NOT NULL,
  details    JSONB
);
ALTER TABLE audit_log REPLICA IDENTITY FULL;
INSERT INTO audit_log VALUES
  ('2024-01-01 10:00:00+00', 'system', 'bootstrap', '{"version": 1}'),
  ('2024-01-01 10:05:00+00', 'alice',  'login',     NULL);

-- Many PostgreSQL types. REPLICA IDENTITY DEFAULT (PK only).
CREATE TABLE type_zoo (
  id              INTEGER PRIMARY KEY,
  c_smallint      SMALLINT,
  c_int           INTEGER,
  c_bigint        BIGINT,
  c_numeric_12_2  NUMERIC(12,2),
  c_numeric       NUMERIC,
  c_real          REAL,
  c_double        DOUBLE PRECISION,
  c_money         MONEY,
  c_bool          BOOLEAN,
  c_text          TEXT,
  c_varchar       VARCHAR(50),
  c_char          CHAR(5),
  c_date          DATE,
  c_time          TIME,
  c_timetz        TIMETZ,
  c_timestamp     TIMESTAMP,
  c_timestamp3    TIMESTAMP(3),
  c_timestamptz   TIMESTAMPTZ,
  c_interval      INTERVAL,
  c_uuid          UUID,
  c_json          JSON,
  c_jsonb         JSONB,
  c_bytea         BYTEA,
  c_int_arr       INTEGER[],
  c_text_arr      TEXT[],
  c_mood          inventory.mood,
  c_status        VARCHAR(10) NOT NULL DEFAULT 'new',
  c_big_text      TEXT,
  c_big_bytea     BYTEA
);
-- force out-of-line, uncompressed TOAST storage for the big columns
ALTER TABLE type_zoo ALTER COLUMN c_big_text SET STORAGE EXTERNAL;
ALTER TABLE type_zoo ALTER COLUMN c_big_bytea SET STORAGE EXTERNAL;

INSERT INTO type_zoo VALUES (
  1, 32767, 2147483647, 9223372036854775807, 1234567890.12, 3.14159265358979323846264338327950288419,
  1.5, 2.718281828459045, 1234.56, true,
  'plain text with "quotes", a backslash \ and unicode: Grüße ✓ 日本', 'varchar value', 'ab',
  '2024-02-29', '13:45:30.123456', '13:45:30.5+02', '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.123456',
  '2024-02-29 13:45:30.123456+02', '1 year 2 months 3 days 04:05:06.789',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1, "b": [1, 2, {"c": null}]}', '{"b": [1, 2, {"c": null}], "a": 1}',
  '\xdeadbeef00ff', '{1,2,3}', '{"x","y z",NULL}', 'happy', default,
  -- ~6 KB of text, out of line (TOASTed)
  (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) AS i),
  -- ~3 KB of bytes, out of line (TOASTed)
  (SELECT decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 200) AS i)
);
-- all-NULL row (except PK and the NOT NULL DEFAULT column)
INSERT INTO type_zoo (id) VALUES (2);
-- edge-value rows 103/104: identical to rows 3/4 that 02_scenario.sql inserts while streaming, so that the
-- snapshot (JDBC) conversion path can be compared with the streaming (pgoutput) conversion path
INSERT INTO type_zoo (id, c_smallint, c_int, c_bigint, c_numeric_12_2, c_numeric, c_real, c_double, c_money, c_bool,
                      c_text, c_varchar, c_char, c_date, c_time, c_timetz, c_timestamp, c_timestamp3, c_timestamptz,
                      c_interval, c_uuid, c_json, c_jsonb, c_bytea, c_int_arr, c_text_arr, c_mood, c_status)
VALUES (103, -32768, -2147483648, -9223372036854775808, -9999999999.99, 'NaN', 'NaN', '-Infinity', -0.01, false,
        '', '', 'abcde', '0001-01-01', '00:00:00', '23:59:59.999999-11:30', '1970-01-01 00:00:00',
        '1969-12-31 23:59:59.999', '1900-01-01 00:00:00+00',
        '-1 days -00:00:01', '00000000-0000-0000-0000-000000000000', '[]', '{}', '\x', '{}', '{}', 'sad', 'edge');
INSERT INTO type_zoo (id, c_numeric, c_double, c_timestamp, c_timestamptz, c_date)
VALUES (104, 0.000000000000000000000000000001, 'Infinity', 'infinity', '-infinity', 'infinity');
