--
-- PostgreSQL database dump
--


-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: alarms; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.alarms (
    id character varying(160) NOT NULL,
    household_id character varying(64) NOT NULL,
    hub_id character varying(64) NOT NULL,
    device_id character varying(128) NOT NULL,
    category character varying(32) NOT NULL,
    urgent boolean NOT NULL,
    place character varying(256) NOT NULL,
    raised_at double precision NOT NULL,
    received_at double precision NOT NULL,
    late boolean NOT NULL,
    acked_at double precision,
    acked_by character varying(128),
    ack_channel character varying(16),
    cleared_at double precision
);


--
-- Name: api_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.api_tokens (
    id character varying(64) NOT NULL,
    token_hash character varying(64) NOT NULL,
    role character varying(16) NOT NULL,
    household_id character varying(64),
    created_at double precision NOT NULL,
    revoked boolean NOT NULL
);


--
-- Name: audit; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit (
    id integer NOT NULL,
    at double precision NOT NULL,
    actor character varying(128) NOT NULL,
    household_id character varying(64),
    action character varying(64) NOT NULL,
    target character varying(256) NOT NULL,
    detail text NOT NULL
);


--
-- Name: audit_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.audit_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: audit_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.audit_id_seq OWNED BY public.audit.id;


--
-- Name: clip_records; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.clip_records (
    hub_id character varying(64) NOT NULL,
    seq bigint NOT NULL,
    household_id character varying(64) NOT NULL,
    clip_id character varying(128) NOT NULL,
    device_id character varying(128) NOT NULL,
    started double precision NOT NULL,
    duration_s double precision NOT NULL,
    size bigint NOT NULL,
    sha256 character varying(64) NOT NULL,
    reason character varying(64) NOT NULL,
    received_at double precision NOT NULL
);


--
-- Name: clips; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.clips (
    household_id character varying(64) NOT NULL,
    clip_id character varying(128) NOT NULL,
    hub_id character varying(64) NOT NULL,
    device_id character varying(128) NOT NULL,
    started double precision NOT NULL,
    duration_s double precision NOT NULL,
    size bigint NOT NULL,
    sha256 character varying(64) NOT NULL,
    reason character varying(64) NOT NULL,
    complete boolean NOT NULL,
    created_at double precision NOT NULL,
    completed_at double precision
);


--
-- Name: commands; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.commands (
    id character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    hub_id character varying(64) NOT NULL,
    kind character varying(32) NOT NULL,
    args json NOT NULL,
    issued_at double precision NOT NULL,
    issued_by character varying(128) NOT NULL,
    delivered_at double precision,
    status character varying(16) NOT NULL,
    detail json,
    completed_at double precision
);


--
-- Name: consents; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.consents (
    household_id character varying(64) NOT NULL,
    marketing boolean NOT NULL,
    marketing_ban boolean NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: contacts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.contacts (
    member_id character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    phone character varying(32) NOT NULL,
    email character varying(254) NOT NULL,
    language character varying(2) NOT NULL,
    call_order integer NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: devices; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.devices (
    household_id character varying(64) NOT NULL,
    device_id character varying(128) NOT NULL,
    hub_id character varying(64) NOT NULL,
    kind character varying(32) NOT NULL,
    name character varying(256) NOT NULL,
    model character varying(256) NOT NULL,
    room character varying(256) NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: diagnostics; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.diagnostics (
    hub_id character varying(64) NOT NULL,
    seq bigint NOT NULL,
    household_id character varying(64) NOT NULL,
    ts double precision NOT NULL,
    body json NOT NULL,
    received_at double precision NOT NULL
);


--
-- Name: enroll_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.enroll_tokens (
    token_hash character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    used_at double precision,
    hub_id character varying(64)
);


--
-- Name: erasure_receipts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.erasure_receipts (
    household_id character varying(64) NOT NULL,
    receipt_id character varying(64) NOT NULL,
    at double precision NOT NULL,
    body json NOT NULL
);


--
-- Name: escalation_policies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.escalation_policies (
    household_id character varying(64) NOT NULL,
    policy json NOT NULL,
    updated_at double precision NOT NULL
);


--
-- Name: events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.events (
    hub_id character varying(64) NOT NULL,
    lane character varying(16) NOT NULL,
    seq bigint NOT NULL,
    household_id character varying(64) NOT NULL,
    device_id character varying(128) NOT NULL,
    kind character varying(32) NOT NULL,
    state character varying(32) NOT NULL,
    attrs json NOT NULL,
    ts double precision NOT NULL,
    received_at double precision NOT NULL
);


--
-- Name: households; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.households (
    id character varying(64) NOT NULL,
    name character varying(256) NOT NULL,
    created_at double precision NOT NULL,
    erased_before double precision DEFAULT '0'::double precision NOT NULL
);


--
-- Name: hub_health; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.hub_health (
    hub_id character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    received_at double precision NOT NULL,
    version character varying(64) NOT NULL,
    uptime_s double precision NOT NULL,
    disk_free_bytes bigint NOT NULL,
    disk_total_bytes bigint NOT NULL,
    store_bytes bigint NOT NULL,
    written_bytes_per_day bigint,
    drivers_down integer NOT NULL,
    lag_alarm bigint NOT NULL,
    lag_events bigint NOT NULL,
    lag_readings bigint NOT NULL,
    lag_clips bigint NOT NULL,
    lag_diagnostics bigint NOT NULL,
    body json NOT NULL
);


--
-- Name: hub_member_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.hub_member_versions (
    hub_id character varying(64) NOT NULL,
    version integer NOT NULL
);


--
-- Name: hubs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.hubs (
    id character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    name character varying(128) NOT NULL,
    cert_sha256 character varying(64) NOT NULL,
    enrolled_at double precision NOT NULL,
    last_seen double precision,
    revoked boolean NOT NULL
);


--
-- Name: member_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.member_keys (
    member_id character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    recipient character varying(128) NOT NULL,
    created_at double precision NOT NULL
);


--
-- Name: member_log; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.member_log (
    household_id character varying(64) NOT NULL,
    version integer NOT NULL,
    digest character varying(64) NOT NULL,
    prev character varying(64) NOT NULL,
    signed text NOT NULL,
    created_at double precision NOT NULL
);


--
-- Name: member_requests; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.member_requests (
    id character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    member_id character varying(64) NOT NULL,
    recipient character varying(128) NOT NULL,
    ed25519 character varying(64) NOT NULL,
    note character varying(256) NOT NULL,
    requested_by character varying(128) NOT NULL,
    created_at double precision NOT NULL
);


--
-- Name: members; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.members (
    id character varying(64) NOT NULL,
    household_id character varying(64) NOT NULL,
    name character varying(128) NOT NULL,
    email character varying(254) NOT NULL,
    phone character varying(32) NOT NULL,
    created_at double precision NOT NULL
);


--
-- Name: notify_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.notify_jobs (
    id character varying(220) NOT NULL,
    household_id character varying(64) NOT NULL,
    alarm_id character varying(160) NOT NULL,
    step integer NOT NULL,
    channel character varying(8) NOT NULL,
    member_id character varying(64) NOT NULL,
    due_at double precision NOT NULL,
    state character varying(12) NOT NULL,
    attempts integer NOT NULL,
    claimed_by character varying(64),
    lease_until double precision,
    intent_at double precision,
    provider_ref character varying(255),
    provider_status character varying(24),
    sent_at double precision,
    late boolean NOT NULL,
    resends integer NOT NULL,
    error text
);


--
-- Name: pending_certs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.pending_certs (
    hub_id character varying(64) NOT NULL,
    cert_sha256 character varying(64) NOT NULL,
    issued_at double precision NOT NULL
);


--
-- Name: readings; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.readings (
    hub_id character varying(64) NOT NULL,
    seq bigint NOT NULL,
    household_id character varying(64) NOT NULL,
    device_id character varying(128) NOT NULL,
    quantity character varying(32) NOT NULL,
    value double precision NOT NULL,
    ts double precision NOT NULL,
    received_at double precision NOT NULL
);


--
-- Name: audit id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit ALTER COLUMN id SET DEFAULT nextval('public.audit_id_seq'::regclass);


--
-- Data for Name: alarms; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.alarms VALUES ('hub_legacy/alarm/0', 'hh_legacy', 'hub_legacy', 'smoke1', 'smoke', true, 'keittiö', 1750000005, 1750000006, false, NULL, NULL, NULL, NULL);


--
-- Data for Name: api_tokens; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: audit; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.audit VALUES (1, 1750000000, 'cli:root', 'hh_legacy', 'household.create', '', '');


--
-- Data for Name: clip_records; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: clips; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: commands; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.commands VALUES ('cmd_legacy', 'hh_legacy', 'hub_legacy', 'ping', '{}', 1750000000, 'cli:root', 1750000001, 'done', '{"ok": true}', 1750000002);


--
-- Data for Name: consents; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.consents VALUES ('hh_legacy', false, false, 1750000000);


--
-- Data for Name: contacts; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.contacts VALUES ('m_aino', 'hh_legacy', '+358401234567', 'aino@example.fi', 'fi', 0, 1750000000);


--
-- Data for Name: devices; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: diagnostics; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: enroll_tokens; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: erasure_receipts; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: escalation_policies; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: events; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.events VALUES ('hub_legacy', 'alarm', 0, 'hh_legacy', 'smoke1', 'smoke', 'alarm', '{"battery": 90}', 1750000005, 1750000006);


--
-- Data for Name: households; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.households VALUES ('hh_legacy', 'Virtanen', 1750000000, 0);


--
-- Data for Name: hub_health; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: hub_member_versions; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: hubs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.hubs VALUES ('hub_legacy', 'hh_legacy', 'olohuone', 'abababababababababababababababababababababababababababababababab', 1750000000, 1750000060, false);


--
-- Data for Name: member_keys; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.member_keys VALUES ('m_aino', 'hh_legacy', 'age1legacyrecipient', 1750000000);


--
-- Data for Name: member_log; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: member_requests; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: members; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.members VALUES ('m_aino', 'hh_legacy', 'Aino', 'aino@example.fi', '+358401234567', 1750000000);


--
-- Data for Name: notify_jobs; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: pending_certs; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: readings; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.readings VALUES ('hub_legacy', 0, 'hh_legacy', 't1', 'temperature', 20, 1750000000, 1750000001);
INSERT INTO public.readings VALUES ('hub_legacy', 1, 'hh_legacy', 't1', 'temperature', 20.1, 1750000001, 1750000002);
INSERT INTO public.readings VALUES ('hub_legacy', 2, 'hh_legacy', 't1', 'temperature', 20.2, 1750000002, 1750000003);
INSERT INTO public.readings VALUES ('hub_legacy', 3, 'hh_legacy', 't1', 'temperature', 20.3, 1750000003, 1750000004);
INSERT INTO public.readings VALUES ('hub_legacy', 4, 'hh_legacy', 't1', 'temperature', 20.4, 1750000004, 1750000005);
INSERT INTO public.readings VALUES ('hub_legacy', 5, 'hh_legacy', 't1', 'temperature', 20.5, 1750000005, 1750000006);
INSERT INTO public.readings VALUES ('hub_legacy', 6, 'hh_legacy', 't1', 'temperature', 20.6, 1750000006, 1750000007);
INSERT INTO public.readings VALUES ('hub_legacy', 7, 'hh_legacy', 't1', 'temperature', 20.7, 1750000007, 1750000008);
INSERT INTO public.readings VALUES ('hub_legacy', 8, 'hh_legacy', 't1', 'temperature', 20.8, 1750000008, 1750000009);
INSERT INTO public.readings VALUES ('hub_legacy', 9, 'hh_legacy', 't1', 'temperature', 20.9, 1750000009, 1750000010);
INSERT INTO public.readings VALUES ('hub_legacy', 10, 'hh_legacy', 't1', 'temperature', 21, 1750000010, 1750000011);
INSERT INTO public.readings VALUES ('hub_legacy', 11, 'hh_legacy', 't1', 'temperature', 21.1, 1750000011, 1750000012);
INSERT INTO public.readings VALUES ('hub_legacy', 12, 'hh_legacy', 't1', 'temperature', 21.2, 1750000012, 1750000013);
INSERT INTO public.readings VALUES ('hub_legacy', 13, 'hh_legacy', 't1', 'temperature', 21.3, 1750000013, 1750000014);
INSERT INTO public.readings VALUES ('hub_legacy', 14, 'hh_legacy', 't1', 'temperature', 21.4, 1750000014, 1750000015);
INSERT INTO public.readings VALUES ('hub_legacy', 15, 'hh_legacy', 't1', 'temperature', 21.5, 1750000015, 1750000016);
INSERT INTO public.readings VALUES ('hub_legacy', 16, 'hh_legacy', 't1', 'temperature', 21.6, 1750000016, 1750000017);
INSERT INTO public.readings VALUES ('hub_legacy', 17, 'hh_legacy', 't1', 'temperature', 21.7, 1750000017, 1750000018);
INSERT INTO public.readings VALUES ('hub_legacy', 18, 'hh_legacy', 't1', 'temperature', 21.8, 1750000018, 1750000019);
INSERT INTO public.readings VALUES ('hub_legacy', 19, 'hh_legacy', 't1', 'temperature', 21.9, 1750000019, 1750000020);
INSERT INTO public.readings VALUES ('hub_legacy', 20, 'hh_legacy', 't1', 'temperature', 22, 1750000020, 1750000021);
INSERT INTO public.readings VALUES ('hub_legacy', 21, 'hh_legacy', 't1', 'temperature', 22.1, 1750000021, 1750000022);
INSERT INTO public.readings VALUES ('hub_legacy', 22, 'hh_legacy', 't1', 'temperature', 22.2, 1750000022, 1750000023);
INSERT INTO public.readings VALUES ('hub_legacy', 23, 'hh_legacy', 't1', 'temperature', 22.3, 1750000023, 1750000024);
INSERT INTO public.readings VALUES ('hub_legacy', 24, 'hh_legacy', 't1', 'temperature', 22.4, 1750000024, 1750000025);
INSERT INTO public.readings VALUES ('hub_legacy', 25, 'hh_legacy', 't1', 'temperature', 22.5, 1750000025, 1750000026);
INSERT INTO public.readings VALUES ('hub_legacy', 26, 'hh_legacy', 't1', 'temperature', 22.6, 1750000026, 1750000027);
INSERT INTO public.readings VALUES ('hub_legacy', 27, 'hh_legacy', 't1', 'temperature', 22.7, 1750000027, 1750000028);
INSERT INTO public.readings VALUES ('hub_legacy', 28, 'hh_legacy', 't1', 'temperature', 22.8, 1750000028, 1750000029);
INSERT INTO public.readings VALUES ('hub_legacy', 29, 'hh_legacy', 't1', 'temperature', 22.9, 1750000029, 1750000030);
INSERT INTO public.readings VALUES ('hub_legacy', 30, 'hh_legacy', 't1', 'temperature', 23, 1750000030, 1750000031);
INSERT INTO public.readings VALUES ('hub_legacy', 31, 'hh_legacy', 't1', 'temperature', 23.1, 1750000031, 1750000032);
INSERT INTO public.readings VALUES ('hub_legacy', 32, 'hh_legacy', 't1', 'temperature', 23.2, 1750000032, 1750000033);
INSERT INTO public.readings VALUES ('hub_legacy', 33, 'hh_legacy', 't1', 'temperature', 23.3, 1750000033, 1750000034);
INSERT INTO public.readings VALUES ('hub_legacy', 34, 'hh_legacy', 't1', 'temperature', 23.4, 1750000034, 1750000035);
INSERT INTO public.readings VALUES ('hub_legacy', 35, 'hh_legacy', 't1', 'temperature', 23.5, 1750000035, 1750000036);
INSERT INTO public.readings VALUES ('hub_legacy', 36, 'hh_legacy', 't1', 'temperature', 23.6, 1750000036, 1750000037);
INSERT INTO public.readings VALUES ('hub_legacy', 37, 'hh_legacy', 't1', 'temperature', 23.7, 1750000037, 1750000038);
INSERT INTO public.readings VALUES ('hub_legacy', 38, 'hh_legacy', 't1', 'temperature', 23.8, 1750000038, 1750000039);
INSERT INTO public.readings VALUES ('hub_legacy', 39, 'hh_legacy', 't1', 'temperature', 23.9, 1750000039, 1750000040);
INSERT INTO public.readings VALUES ('hub_legacy', 40, 'hh_legacy', 't1', 'temperature', 24, 1750000040, 1750000041);
INSERT INTO public.readings VALUES ('hub_legacy', 41, 'hh_legacy', 't1', 'temperature', 24.1, 1750000041, 1750000042);
INSERT INTO public.readings VALUES ('hub_legacy', 42, 'hh_legacy', 't1', 'temperature', 24.2, 1750000042, 1750000043);
INSERT INTO public.readings VALUES ('hub_legacy', 43, 'hh_legacy', 't1', 'temperature', 24.3, 1750000043, 1750000044);
INSERT INTO public.readings VALUES ('hub_legacy', 44, 'hh_legacy', 't1', 'temperature', 24.4, 1750000044, 1750000045);
INSERT INTO public.readings VALUES ('hub_legacy', 45, 'hh_legacy', 't1', 'temperature', 24.5, 1750000045, 1750000046);
INSERT INTO public.readings VALUES ('hub_legacy', 46, 'hh_legacy', 't1', 'temperature', 24.6, 1750000046, 1750000047);
INSERT INTO public.readings VALUES ('hub_legacy', 47, 'hh_legacy', 't1', 'temperature', 24.7, 1750000047, 1750000048);
INSERT INTO public.readings VALUES ('hub_legacy', 48, 'hh_legacy', 't1', 'temperature', 24.8, 1750000048, 1750000049);
INSERT INTO public.readings VALUES ('hub_legacy', 49, 'hh_legacy', 't1', 'temperature', 24.9, 1750000049, 1750000050);


--
-- Name: audit_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.audit_id_seq', 1, true);


--
-- Name: alarms alarms_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.alarms
    ADD CONSTRAINT alarms_pkey PRIMARY KEY (id);


--
-- Name: api_tokens api_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (id);


--
-- Name: api_tokens api_tokens_token_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash);


--
-- Name: audit audit_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit
    ADD CONSTRAINT audit_pkey PRIMARY KEY (id);


--
-- Name: clip_records clip_records_pk; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.clip_records
    ADD CONSTRAINT clip_records_pk PRIMARY KEY (hub_id, seq);


--
-- Name: clips clips_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.clips
    ADD CONSTRAINT clips_pkey PRIMARY KEY (household_id, clip_id);


--
-- Name: commands commands_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.commands
    ADD CONSTRAINT commands_pkey PRIMARY KEY (id);


--
-- Name: consents consents_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.consents
    ADD CONSTRAINT consents_pkey PRIMARY KEY (household_id);


--
-- Name: contacts contacts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.contacts
    ADD CONSTRAINT contacts_pkey PRIMARY KEY (member_id);


--
-- Name: devices devices_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.devices
    ADD CONSTRAINT devices_pkey PRIMARY KEY (household_id, device_id);


--
-- Name: diagnostics diagnostics_pk; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.diagnostics
    ADD CONSTRAINT diagnostics_pk PRIMARY KEY (hub_id, seq);


--
-- Name: enroll_tokens enroll_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.enroll_tokens
    ADD CONSTRAINT enroll_tokens_pkey PRIMARY KEY (token_hash);


--
-- Name: erasure_receipts erasure_receipts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.erasure_receipts
    ADD CONSTRAINT erasure_receipts_pkey PRIMARY KEY (household_id, receipt_id);


--
-- Name: escalation_policies escalation_policies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.escalation_policies
    ADD CONSTRAINT escalation_policies_pkey PRIMARY KEY (household_id);


--
-- Name: events events_pk; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pk PRIMARY KEY (hub_id, lane, seq);


--
-- Name: households households_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.households
    ADD CONSTRAINT households_pkey PRIMARY KEY (id);


--
-- Name: hub_health hub_health_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hub_health
    ADD CONSTRAINT hub_health_pkey PRIMARY KEY (hub_id);


--
-- Name: hub_member_versions hub_member_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hub_member_versions
    ADD CONSTRAINT hub_member_versions_pkey PRIMARY KEY (hub_id);


--
-- Name: hubs hubs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hubs
    ADD CONSTRAINT hubs_pkey PRIMARY KEY (id);


--
-- Name: member_keys member_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_keys
    ADD CONSTRAINT member_keys_pkey PRIMARY KEY (member_id);


--
-- Name: member_log member_log_pk; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_log
    ADD CONSTRAINT member_log_pk PRIMARY KEY (household_id, version);


--
-- Name: member_requests member_requests_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_requests
    ADD CONSTRAINT member_requests_pkey PRIMARY KEY (id);


--
-- Name: members members_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_pkey PRIMARY KEY (id);


--
-- Name: notify_jobs notify_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.notify_jobs
    ADD CONSTRAINT notify_jobs_pkey PRIMARY KEY (id);


--
-- Name: pending_certs pending_certs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.pending_certs
    ADD CONSTRAINT pending_certs_pkey PRIMARY KEY (hub_id);


--
-- Name: readings readings_pk; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.readings
    ADD CONSTRAINT readings_pk PRIMARY KEY (hub_id, seq);


--
-- Name: alarms_open; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX alarms_open ON public.alarms USING btree (acked_at, raised_at);


--
-- Name: alarms_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX alarms_received ON public.alarms USING btree (received_at);


--
-- Name: clip_records_household; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX clip_records_household ON public.clip_records USING btree (household_id, started);


--
-- Name: clip_records_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX clip_records_received ON public.clip_records USING btree (received_at);


--
-- Name: clips_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX clips_created ON public.clips USING btree (created_at);


--
-- Name: commands_pending; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX commands_pending ON public.commands USING btree (hub_id, status);


--
-- Name: diagnostics_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX diagnostics_received ON public.diagnostics USING btree (received_at);


--
-- Name: events_household_ts; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_household_ts ON public.events USING btree (household_id, ts);


--
-- Name: events_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_received ON public.events USING btree (received_at);


--
-- Name: ix_alarms_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_alarms_household_id ON public.alarms USING btree (household_id);


--
-- Name: ix_audit_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_audit_at ON public.audit USING btree (at);


--
-- Name: ix_audit_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_audit_household_id ON public.audit USING btree (household_id);


--
-- Name: ix_commands_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_commands_household_id ON public.commands USING btree (household_id);


--
-- Name: ix_contacts_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_contacts_household_id ON public.contacts USING btree (household_id);


--
-- Name: ix_enroll_tokens_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_enroll_tokens_household_id ON public.enroll_tokens USING btree (household_id);


--
-- Name: ix_erasure_receipts_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_erasure_receipts_at ON public.erasure_receipts USING btree (at);


--
-- Name: ix_hub_health_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_hub_health_household_id ON public.hub_health USING btree (household_id);


--
-- Name: ix_hubs_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_hubs_household_id ON public.hubs USING btree (household_id);


--
-- Name: ix_member_keys_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_member_keys_household_id ON public.member_keys USING btree (household_id);


--
-- Name: ix_member_requests_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_member_requests_household_id ON public.member_requests USING btree (household_id);


--
-- Name: ix_members_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_members_household_id ON public.members USING btree (household_id);


--
-- Name: ix_notify_jobs_alarm_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_notify_jobs_alarm_id ON public.notify_jobs USING btree (alarm_id);


--
-- Name: ix_notify_jobs_household_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_notify_jobs_household_id ON public.notify_jobs USING btree (household_id);


--
-- Name: notify_jobs_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX notify_jobs_due ON public.notify_jobs USING btree (state, due_at);


--
-- Name: readings_household_ts; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX readings_household_ts ON public.readings USING btree (household_id, ts);


--
-- Name: readings_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX readings_received ON public.readings USING btree (received_at);


--
-- Name: consents consents_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.consents
    ADD CONSTRAINT consents_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: contacts contacts_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.contacts
    ADD CONSTRAINT contacts_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: contacts contacts_member_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.contacts
    ADD CONSTRAINT contacts_member_id_fkey FOREIGN KEY (member_id) REFERENCES public.members(id) ON DELETE CASCADE;


--
-- Name: devices devices_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.devices
    ADD CONSTRAINT devices_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: enroll_tokens enroll_tokens_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.enroll_tokens
    ADD CONSTRAINT enroll_tokens_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: escalation_policies escalation_policies_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.escalation_policies
    ADD CONSTRAINT escalation_policies_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: hubs hubs_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.hubs
    ADD CONSTRAINT hubs_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: member_keys member_keys_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_keys
    ADD CONSTRAINT member_keys_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: member_keys member_keys_member_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_keys
    ADD CONSTRAINT member_keys_member_id_fkey FOREIGN KEY (member_id) REFERENCES public.members(id);


--
-- Name: member_log member_log_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_log
    ADD CONSTRAINT member_log_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: member_requests member_requests_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_requests
    ADD CONSTRAINT member_requests_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- Name: members members_household_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_household_id_fkey FOREIGN KEY (household_id) REFERENCES public.households(id);


--
-- PostgreSQL database dump complete
--


