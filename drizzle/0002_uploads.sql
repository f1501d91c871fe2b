CREATE TABLE "uploads" (
	"session_id" text PRIMARY KEY NOT NULL,
	"track_id" text NOT NULL,
	"file_name" text,
	"format" text NOT NULL,
	"size_bytes" bigint NOT NULL,
	"duration_ms" integer NOT NULL,
	"sample_rate" integer NOT NULL,
	"mean_dbfs" real NOT NULL,
	"warnings" jsonb NOT NULL,
	"priority" text NOT NULL,
	"windows" jsonb NOT NULL,
	"state" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "uploads" ADD CONSTRAINT "uploads_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "uploads_state_idx" ON "uploads" USING btree ("state");